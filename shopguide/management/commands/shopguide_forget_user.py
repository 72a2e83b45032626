from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from shopguide.operations import forget_user


class Command(BaseCommand):
    help = "Delete a user's search events (and, through the user_forgotten signal, the shop's search history)."

    def add_arguments(self, parser):
        parser.add_argument("username", help="the user's login name")

    def handle(self, *args, username, **options):
        model = get_user_model()
        user = model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        deleted, keys = forget_user(user)
        self.stdout.write(f"Forgot {username}: {deleted} search event(s) from {len(keys)} session(s) deleted.")
