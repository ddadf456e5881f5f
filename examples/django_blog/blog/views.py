"""Views that cache with Django's low-level API and a template fragment.

There is no post_save/post_delete handler anywhere in this project. walbust reads every
committed change from PostgreSQL's replication stream and deletes the keys below as
rules.yaml describes, whether the row was written by Model.save(), QuerySet.update(),
bulk_create(), raw SQL or another service. Each key names the rule that invalidates it.
"""

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import F
from django.shortcuts import get_object_or_404, render
from django.utils.html import linebreaks
from django.utils.safestring import mark_safe

from .models import Category, Post

PAGE_TIMEOUT = 600
# Articles are cached under a version that walbust bumps: an old version is never read
# again, it only waits for this timeout to free its memory.
ARTICLE_TIMEOUT = 24 * 3600


def _summary(post):
    """What a post list shows; plain data, so the cached value does not pickle models."""
    return {
        "id": post.pk,
        "title": post.title,
        "is_featured": post.is_featured,
        "created_at": post.created_at,
        "author": {"id": post.author_id, "name": post.author.get_username()},
        "category": {"id": post.category_id, "name": post.category.name},
    }


def _summaries(queryset):
    return [_summary(p) for p in queryset.select_related("author", "category")]


def home(request):
    # home_page_posts: rules "post-pages" (any post change), "category-pages" (a category
    # renamed), "author-names" (an author renamed).
    posts = cache.get_or_set("home_page_posts", lambda: _summaries(Post.objects.all()[:20]), PAGE_TIMEOUT)
    return render(request, "blog/home.html", {"posts": posts})


def category_posts(request, pk):
    # category_posts_<category_id>: rule "post-pages" renders it from the new and the
    # previous row, so moving a post clears the category it left as well as the one it
    # joined (the job a field tracker did in the post_save handler).
    def load():
        category = get_object_or_404(Category, pk=pk)
        return {"title": category.name, "posts": _summaries(category.posts.all())}

    page = cache.get_or_set(f"category_posts_{pk}", load, PAGE_TIMEOUT)
    return render(request, "blog/post_list.html", page)


def author_posts(request, pk):
    # author_posts_<author_id>: rules "post-pages" and "author-names".
    def load():
        author = get_object_or_404(get_user_model(), pk=pk)
        return {"title": f"Posts by {author.get_username()}", "posts": _summaries(author.posts.all())}

    page = cache.get_or_set(f"author_posts_{pk}", load, PAGE_TIMEOUT)
    return render(request, "blog/post_list.html", page)


def _article_html(pk):
    """The rendered article body, cached under a version walbust bumps.

    Rule "post-article" sets article_version_<id> to the LSN of each transaction that
    changes the title or content. The body is stored with Django's own cache versioning
    (cache.set(..., version=v) writes "blog:<v>:article_<id>"), so a bumped version is a
    miss and the stale copy is never read again. Comments do not touch the version: the
    expensive body survives them while post_detail_<id> is rebuilt.
    """
    version = cache.get_or_set(f"article_version_{pk}", 1, timeout=None)

    def render_article():
        # Stands in for Markdown rendering, the expensive part worth its own entry.
        content = Post.objects.values_list("content", flat=True).get(pk=pk)
        return linebreaks(content, autoescape=True)

    # linebreaks(autoescape=True) escaped the content: the HTML around it is ours.
    return mark_safe(cache.get_or_set(f"article_{pk}", render_article, ARTICLE_TIMEOUT, version=version))


def post_detail(request, pk):
    def load():
        post = get_object_or_404(Post.objects.select_related("author", "category"), pk=pk)
        # A miss is a render: count it. The UPDATE changes only view_count, which rule
        # "post-pages" ignores (ignore_changes), so it does not delete the entry cached
        # right after it.
        Post.objects.filter(pk=pk).update(view_count=F("view_count") + 1)
        return dict(
            _summary(post),
            view_count=post.view_count + 1,
            comments=list(post.comments.values("author_name", "body", "created_at")),
        )

    # post_detail_<id>: rules "post-pages", "comments", "category-pages", "author-names".
    post = cache.get_or_set(f"post_detail_{pk}", load, PAGE_TIMEOUT)
    context = {
        "post": post,
        "article": _article_html(pk),
        # The sidebar is a {% cache 600 sidebar author.id %} fragment: this queryset is
        # lazy and only runs when the fragment is missing from the cache.
        "author": post["author"],
        "author_recent_posts": Post.objects.filter(author_id=post["author"]["id"])[:5],
    }
    return render(request, "blog/post_detail.html", context)
