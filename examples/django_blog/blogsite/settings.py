"""Settings of the walbust blog example.

Everything that differs between machines comes from the environment, so the same settings
serve the one-command demo (run.sh), the integration test and a gunicorn deployment.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "blog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "blogsite.urls"
WSGI_APPLICATION = "blogsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("BLOG_DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("BLOG_DB_PORT", "5432"),
        "NAME": os.environ.get("BLOG_DB_NAME", "blog"),
        "USER": os.environ.get("BLOG_DB_USER", "blog"),
        "PASSWORD": os.environ.get("BLOG_DB_PASSWORD", ""),
    }
}

# The walbust publication the blog's migrations create (blog/migrations/0002_walbust.py).
# walbust.yaml's postgres.publication must name the same one.
WALBUST_PUBLICATION = os.environ.get("BLOG_WALBUST_PUBLICATION", "walbust")

# django-redis stores cache.set("post_detail_7", ...) under "blog:3:post_detail_7":
# KEY_PREFIX:VERSION:key. rules.yaml renders keys with `key_format: django` and the same
# key_prefix and version; change them together, or walbust deletes keys nobody reads.
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ.get("BLOG_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "KEY_PREFIX": "blog",
        "VERSION": 3,
        # walbust deletes entries when the data changes; the timeout only bounds memory.
        "TIMEOUT": 3600,
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "/static/"
