from pathlib import Path

from django.core.management.base import BaseCommand

from features.config_file.export import config_export
from features.config_file.formats import FORMATS, document_dump


class Command(BaseCommand):
    help = (
        "Write the configuration (environments, metrics, experiments with their status, flags with their "
        "rules per environment) as YAML or JSON, to standard output or --output FILE. SDK keys, webhooks, "
        "users and results are not part of it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", help="Write to this file instead of standard output")
        parser.add_argument(
            "--format",
            choices=FORMATS,
            help="yaml (default) or json; by default taken from the output file's extension",
        )

    def handle(self, *args, output: str | None, format: str | None, **options):
        if format is None:
            format = "json" if output and output.endswith(".json") else "yaml"
        text = document_dump(config_export(), format=format)
        if output:
            Path(output).write_text(text, encoding="utf-8")
            self.stderr.write(f"Configuration written to {output}.")
        else:
            self.stdout.write(text, ending="")
