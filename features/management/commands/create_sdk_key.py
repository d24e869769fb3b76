from django.core.management.base import BaseCommand, CommandError

from features.models import Environment, SdkKeyKind
from features.services import sdk_key_create


class Command(BaseCommand):
    help = (
        "Make an SDK key for an environment: secret (server SDKs, every SDK endpoint) or, with --client, "
        "a publishable client key that only reads the flags payload. The key is shown once, alone on "
        "the last line."
    )

    def add_arguments(self, parser):
        parser.add_argument("environment", help="Environment key, e.g. production")
        parser.add_argument("--name", default="", help="Who uses the key, e.g. 'web app'")
        parser.add_argument(
            "--client",
            action="store_true",
            help="A publishable client key (pk_...) for browsers and apps: reads /api/features/<key> only",
        )
        parser.add_argument(
            "--encrypt",
            action="store_true",
            help="Encrypt the key's GrowthBook payload (AES-128-CBC, GrowthBook's encryptedFeatures); "
            "the decryption key for the SDK is printed on the line before the key",
        )

    def handle(self, *args, environment: str, name: str, client: bool, encrypt: bool = False, **options):
        try:
            env = Environment.objects.get(key=environment)
        except Environment.DoesNotExist:
            known = ", ".join(Environment.objects.values_list("key", flat=True))
            raise CommandError(f"There is no environment '{environment}'. Known: {known}.") from None
        kind = SdkKeyKind.CLIENT if client else SdkKeyKind.SECRET
        key, raw = sdk_key_create(environment=env, name=name, kind=kind, encrypt=encrypt)
        label = "Client key" if client else "SDK key"
        self.stdout.write(
            f"{label} {key.prefix}… for {env.key} created. It is shown only now; store it safely:"
        )
        if key.encryption_key:
            # The key stays alone on the last line (scripts take it with `tail -1`).
            self.stdout.write(f"Decryption key (the SDK's decryptionKey): {key.encryption_key}")
        self.stdout.write(raw)
