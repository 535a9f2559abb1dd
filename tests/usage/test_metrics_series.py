"""Per-model metric series exist once they are used, and only then: prometheus-client
exports a labelled series, zeros included, as soon as it is made."""

from __future__ import annotations

from prometheus_client import generate_latest

from relaygate.metrics import Metrics


def series_for(metrics: Metrics, model: str) -> list[str]:
    text = generate_latest(metrics.registry).decode()
    return [line for line in text.splitlines() if f'gen_ai_request_model="{model}"' in line]


def test_a_refused_request_makes_only_its_request_counter() -> None:
    metrics = Metrics()
    metrics.for_model("", "").request(404).inc()
    assert series_for(metrics, "") == [
        line for line in series_for(metrics, "") if line.startswith("relaygate_requests")
    ]
    assert len(series_for(metrics, "")) == 2  # the counter and its _created sample


def test_a_model_that_never_streams_has_no_time_to_first_token() -> None:
    metrics = Metrics()
    bound = metrics.for_model("gpt-x", "main")
    assert metrics.for_model("gpt-x", "main") is bound
    bound.request(200).inc()
    bound.duration().observe(0.25)
    bound.token_usage("input").observe(12)
    bound.tokens("input").inc(12)
    names = {line.split("{")[0] for line in series_for(metrics, "gpt-x")}
    assert not any("time_to_first_token" in name for name in names)
    assert not any('gen_ai_token_type="output"' in line for line in series_for(metrics, "gpt-x"))
    assert (
        metrics.registry.get_sample_value(
            "relaygate_tokens_total",
            {
                "gen_ai_request_model": "gpt-x",
                "relaygate_endpoint": "main",
                "gen_ai_token_type": "input",
            },
        )
        == 12
    )
