from django.contrib import admin

from .models import Category, Comment, Post


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    list_display = ("title", "author", "category", "is_featured", "view_count", "updated_at")
    list_filter = ("category", "is_featured")
    prepopulated_fields = {"slug": ("title",)}
    # Bulk actions run QuerySet.update(), which sends no signal: walbust still sees it.
    actions = ["feature", "unfeature"]

    @admin.action(description="Feature selected posts")
    def feature(self, request, queryset):
        queryset.update(is_featured=True)

    @admin.action(description="Unfeature selected posts")
    def unfeature(self, request, queryset):
        queryset.update(is_featured=False)


admin.site.register(Comment)
