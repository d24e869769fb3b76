from django.core.management.base import BaseCommand, CommandError

from features.models import Environment
from features.services import sdk_key_create


class Command(BaseCommand):
    help = "Make an SDK key for an environment. The key is shown once, alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("environment", help="Environment key, e.g. production")
        parser.add_argument("--name", default="", help="Who uses the key, e.g. 'web app'")

    def handle(self, *args, environment: str, name: str, **options):
        try:
            env = Environment.objects.get(key=environment)
        except Environment.DoesNotExist:
            known = ", ".join(Environment.objects.values_list("key", flat=True))
            raise CommandError(f"There is no environment '{environment}'. Known: {known}.") from None
        key, raw = sdk_key_create(environment=env, name=name)
        self.stdout.write(
            f"SDK key {key.prefix}… for {env.key} created. It is shown only now; store it safely:"
        )
        self.stdout.write(raw)
