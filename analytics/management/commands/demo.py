import os

from django.core.management.base import BaseCommand

from analytics.demo import demo_workspace_create


class Command(BaseCommand):
    help = "Create the demo workspace (idempotent): metrics, flags, experiments and an admin user."

    def handle(self, *args, **options):
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "admin")
        workspace = demo_workspace_create(admin_password=password)
        for item in workspace.created:
            self.stdout.write(f"  created {item}")
        if not workspace.created:
            self.stdout.write("  the demo workspace already exists; nothing to create")
        if workspace.sdk_key:
            self.stdout.write(f"  SDK key for development (shown once): {workspace.sdk_key}")
        else:
            self.stdout.write("  make an SDK key with: python manage.py create_sdk_key development")
        self.stdout.write(
            self.style.SUCCESS(
                f"Log in at http://127.0.0.1:8000/admin/ as {workspace.admin_username} / {workspace.admin_password}"
            )
        )
