from django.apps import AppConfig


class BreakoutsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "breakouts"
    verbose_name = "Breakout rooms"
