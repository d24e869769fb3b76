from dataclasses import asdict, dataclass


@dataclass
class Result:
    """One measurement against its baseline from the same run."""

    entry: str
    measured: str
    value: float
    baseline: str
    baseline_value: float
    unit: str
    higher_is_better: bool = True
    goal: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline_value if self.baseline_value else float("nan")

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}

    @staticmethod
    def table(results: list["Result"]) -> str:
        header = "| entry | measured | value | baseline | baseline value | ratio | goal |"
        lines = [header, "|---|---|---|---|---|---|---|"]
        for r in results:
            lines.append(
                f"| {r.entry} | {r.measured} | {r.value:,.2f} {r.unit} | {r.baseline} | "
                f"{r.baseline_value:,.2f} {r.unit} | {r.ratio:.3f} | {r.goal} |"
            )
        return "\n".join(lines)
