from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from features.config_file.apply import config_import
from features.config_file.formats import DocumentUnreadable, document_load
from features.config_file.plan import ConfigFileError


class Command(BaseCommand):
    help = (
        "Make the configuration match FILE (from export_config, YAML or JSON; - for standard input): "
        "prints each object it creates, changes (with the fields) or deletes, then applies it all in one "
        "transaction through the same services and checks as the admin, or nothing when any object is "
        "refused (named with the reason). Objects the file does not name are kept unless --prune."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="The configuration file, or - for standard input")
        parser.add_argument(
            "--dry-run", action="store_true", help="Check everything and show the changes; write nothing"
        )
        parser.add_argument(
            "--prune",
            action="store_true",
            help="Also delete the flags, experiments, metrics and environments the file does not name",
        )
        parser.add_argument("--user", help="Record the changes in the history under this username")

    def handle(self, *args, file: str, dry_run: bool, prune: bool, user: str | None, **options):
        import sys

        try:
            text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {file}: {exc}") from None
        actor = None
        if user:
            actor = get_user_model().objects.filter(username=user).first()
            if actor is None:
                raise CommandError(f"There is no user '{user}'.")
        try:
            plan = config_import(document_load(text), user=actor, dry_run=dry_run, prune=prune).plan
        except (DocumentUnreadable, ConfigFileError) as exc:
            raise CommandError(f"Nothing was imported: {exc}") from None
        self.stdout.write(plan.text())
        if dry_run:
            self.stdout.write("Dry run: nothing was written.")
        elif plan.changes:
            self.stdout.write("Applied.")
