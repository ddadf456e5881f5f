from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("post/<int:pk>/", views.post_detail, name="post_detail"),
    path("category/<int:pk>/", views.category_posts, name="category_posts"),
    path("author/<int:pk>/", views.author_posts, name="author_posts"),
]
