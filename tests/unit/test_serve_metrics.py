"""Prometheus text format, written by hand: exact output for known observations."""

from fmnist.serve.metrics import Counter, Histogram, Metrics


def test_histogram_is_cumulative_with_sum_and_count():
    h = Histogram("x_seconds", "Help text.", ("route",), (0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 3.0):
        h.observe(("/a",), v)
    assert h.render() == [
        "# HELP x_seconds Help text.",
        "# TYPE x_seconds histogram",
        'x_seconds_bucket{route="/a",le="0.1"} 2',  # le is inclusive: 0.1 counts in 0.1
        'x_seconds_bucket{route="/a",le="1.0"} 3',
        'x_seconds_bucket{route="/a",le="+Inf"} 4',
        'x_seconds_sum{route="/a"} 3.65',
        'x_seconds_count{route="/a"} 4',
    ]


def test_counter_series_are_sorted_and_labels_escaped():
    c = Counter("req_total", "Requests.", ("route", "status"))
    c.inc(("/b", "200"))
    c.inc(("/a", "404"), 2)
    c.inc(('we"ird\\\n', "200"))
    assert c.render()[2:] == [
        'req_total{route="/a",status="404"} 2',
        'req_total{route="/b",status="200"} 1',
        'req_total{route="we\\"ird\\\\\\n",status="200"} 1',
    ]


def test_metrics_render_all_families():
    m = Metrics()
    m.observe_request("/v1/classify", "POST", 200, 0.002)
    m.observe_batch("classify", 5)
    text = m.render()
    assert text.endswith("\n")
    lines = text.splitlines()
    assert 'fmnist_http_requests_total{route="/v1/classify",method="POST",status="200"} 1' in lines
    assert 'fmnist_http_request_duration_seconds_bucket{route="/v1/classify",le="0.0025"} 1' in lines
    assert 'fmnist_http_request_duration_seconds_bucket{route="/v1/classify",le="0.001"} 0' in lines
    assert 'fmnist_batch_size_bucket{op="classify",le="4"} 0' in lines
    assert 'fmnist_batch_size_bucket{op="classify",le="8"} 1' in lines
    assert 'fmnist_batch_size_sum{op="classify"} 5' in lines
    assert "# TYPE fmnist_batch_size histogram" in lines
