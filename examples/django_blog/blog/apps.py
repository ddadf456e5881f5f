from django.apps import AppConfig


class BlogConfig(AppConfig):
    name = "blog"
    default_auto_field = "django.db.models.BigAutoField"
    # No ready() hook connecting post_save/post_delete: walbust invalidates the cache
    # from PostgreSQL's replication stream, whatever wrote the row.
