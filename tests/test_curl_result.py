"""CurlResult on real curl output, captured by tests/data/curl/capture.py (ports vary per capture)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.curl_result import CurlResult, Headers, curl_command, parse_curl_output

CAPTURED = Path(__file__).parent / "data" / "curl"


def captured(case: str, *, text_mode: bool = False) -> CurlResult:
    """Parse a capture as bytes, or as subprocess(text=True) would hand it over (CRLF → LF)."""
    stdout = (CAPTURED / f"{case}.stdout").read_bytes()
    stderr = (CAPTURED / f"{case}.stderr").read_bytes()
    exit_code = int((CAPTURED / f"{case}.rc").read_text())
    if text_mode:
        return CurlResult.parse(exit_code, stdout.decode().replace("\r\n", "\n"), stderr.decode())
    return CurlResult.parse(exit_code, stdout, stderr)


def test_captures_are_present():
    cases = {path.stem for path in CAPTURED.glob("*.rc")}
    assert len(cases) >= 19, sorted(cases)


@pytest.mark.parametrize("text_mode", [False, True], ids=["crlf-bytes", "lf-text"])
def test_200(text_mode):
    result = captured("ok_200", text_mode=text_mode)
    assert result.ok and result.exit_code == 0
    assert result.statuses == [200]
    assert result.final_status == 200
    response = result.final_response
    assert (response.http_version, response.status, response.reason) == ("1.1", 200, "OK")
    assert response.headers.get("x-egress-test") == "ok"
    assert response.headers.get("X-EGRESS-TEST") == "ok"
    assert response.headers.get_all("set-cookie") == ["a=1", "b=2"]
    assert response.headers.get("content-length") == "6"
    assert response.headers.get("server") == "capture-upstream"  # curl keeps a trailing space; we strip it
    assert result.error_name is None
    assert result.write_out == ""
    assert result.describe() == "200 OK"


def test_redirect_chain_keeps_every_hop_in_order():
    result = captured("redirect_chain_200")
    assert result.statuses == [302, 301, 200]
    assert [r.reason for r in result.responses] == ["Found", "Moved Permanently", "OK"]
    assert [r.location for r in result.responses] == ["/chain-2", "/ok", None]
    assert result.final_status == 200
    assert result.describe() == "302 Found (location: /chain-2) → 301 Moved Permanently (location: /ok) → 200 OK"


def test_redirect_not_followed():
    result = captured("redirect_not_followed")
    assert result.ok
    assert result.statuses == [301]
    assert result.final_response.location.startswith("https://127.0.0.1:")
    assert result.final_response.location.endswith("/politics")


def test_redirect_then_tls_handshake_fails():
    result = captured("redirect_then_tls_error")
    assert result.exit_code == 35
    assert result.statuses == [301]
    assert result.final_status == 301
    assert result.error_name == "SSL connect error"
    assert result.error_message.startswith("curl: (35) ")
    assert "wrong version number" in result.error_message
    summary = result.describe()
    assert summary.startswith("301 Moved Permanently (location: https://127.0.0.1:")
    assert "/politics) → exit 35 (SSL connect error): curl: (35) " in summary
    assert "\n" not in summary


def test_redirect_then_connection_refused():
    result = captured("redirect_then_refused")
    assert (result.exit_code, result.statuses, result.error_name) == (7, [301], "couldn't connect")
    assert "Failed to connect to 127.0.0.1" in result.error_message


@pytest.mark.parametrize(
    ("case", "exit_code", "error_name", "message_part"),
    [
        ("connect_refused", 7, "couldn't connect", "Couldn't connect to server"),
        ("resolve_failure", 6, "couldn't resolve host", "Could not resolve host: edition.cnn.com.invalid"),
        ("self_signed_cert", 60, "peer certificate cannot be authenticated", "self-signed certificate"),
        ("empty_reply", 52, "empty reply from server", "Empty reply from server"),
        ("timeout", 28, "timeout", "Operation timed out"),
    ],
)
def test_failures_without_any_response(case, exit_code, error_name, message_part):
    result = captured(case)
    assert result.exit_code == exit_code
    assert not result.ok
    assert result.responses == ()
    assert result.statuses == []
    assert result.final_status is None
    assert result.error_name == error_name
    assert message_part in result.error_message
    assert result.describe().startswith(f"no HTTP response → exit {exit_code} ({error_name}): curl: ({exit_code}) ")


def test_self_signed_message_is_curls_first_line_not_its_advice():
    result = captured("self_signed_cert")
    assert result.error_message == "curl: (60) SSL certificate problem: self-signed certificate"


@pytest.mark.parametrize(
    ("case", "exit_code", "error_name"),
    [("truncated_body", 18, "partial file"), ("reset_mid_body", 56, "recv failure")],
)
def test_headers_arrived_then_body_failed(case, exit_code, error_name):
    result = captured(case)
    assert (result.exit_code, result.statuses, result.error_name) == (exit_code, [200], error_name)
    assert result.final_response.headers.get("content-length") == "1000"


def test_interim_100_continue_is_not_a_hop():
    result = captured("continue_100")
    assert result.statuses == [200]
    assert [(r.status, r.reason) for r in result.interim_responses] == [(100, "Continue")]
    assert len(result.interim_responses[0].headers) == 0


def test_http2_status_line_has_no_reason():
    result = captured("http2_envoy_200")
    response = result.final_response
    assert (response.http_version, response.status, response.reason) == ("2", 200, "")
    assert response.headers.get("Server") == "envoy"
    assert result.describe() == "200"


def test_envoy_503_is_a_response_not_a_curl_error():
    result = captured("envoy_503_dead_upstream")
    assert result.ok
    assert result.statuses == [503]
    assert result.final_response.reason == "Service Unavailable"
    assert result.final_response.headers.get("server") == "envoy"


def test_write_out_after_header_dump():
    result = captured("write_out_http_code")
    assert result.statuses == [200]
    assert result.write_out == "200"
    assert result.final_response.headers.get("content-type") == "text/plain"


def test_write_out_alone_gives_the_final_status():
    result = captured("write_out_only")
    assert result.responses == ()
    assert result.write_out == "200"
    assert result.final_status == 200


def test_write_out_000_means_no_response():
    result = captured("write_out_only_refused")
    assert result.write_out == "000"
    assert result.final_status is None
    assert result.exit_code == 7


def test_verbose_run_with_header_dump_reads_stdout():
    result = captured("verbose_redirect_then_tls_error")
    assert result.statuses == [301]
    assert result.stderr.count("< HTTP/1.1 301") == 1  # the same response is in the trace too
    assert result.error_message.startswith("curl: (35) ")


def test_verbose_trace_alone_gives_the_chain():
    result = captured("verbose_without_header_dump")
    assert (CAPTURED / "verbose_without_header_dump.stdout").read_bytes() == b""
    assert result.statuses == [302, 301, 200]
    assert result.responses[-1].headers.get_all("set-cookie") == ["a=1", "b=2"]
    assert result.error_message == ""  # a clean -v run has no complaint, only trace lines


def test_empty_output():
    result = parse_curl_output(0, "", "")
    assert (result.responses, result.statuses, result.final_status, result.write_out) == ((), [], None, "")
    assert result.describe() == "no HTTP response"


def test_unknown_exit_code_is_still_described():
    result = parse_curl_output(99, "", "something odd\n")
    assert result.error_name is None
    assert result.describe() == "no HTTP response → exit 99 (unknown curl error): something odd"


def test_folded_header_and_cut_block():
    # obs-fold continuation, then a block cut short by a line that is not a header
    stdout = "HTTP/1.0 200 OK\r\nX-Long: part one\r\n\tpart two\r\nHTTP/1.1 404 Not Found\r\n\r\nbody text"
    result = parse_curl_output(0, stdout)
    assert result.statuses == [200, 404]
    assert result.responses[0].http_version == "1.0"
    assert result.responses[0].headers.get("x-long") == "part one part two"
    assert result.write_out == "body text"


def test_headers_helper():
    headers = Headers((("Location", "/a"), ("location", "/b")))
    assert headers.get("LOCATION") == "/a"
    assert headers.get_all("Location") == ["/a", "/b"]
    assert "location" in headers and "x-missing" not in headers
    assert headers.get("x-missing", "default") == "default"
    assert list(headers) == [("Location", "/a"), ("location", "/b")]


def test_result_is_frozen():
    result = captured("ok_200")
    with pytest.raises(AttributeError):
        result.exit_code = 1  # type: ignore[misc]


def test_command_is_what_the_captures_ran():
    url = "http://edition.cnn.com/politics"
    assert curl_command(url) == ["curl", "-sS", "-L", "-o", "/dev/null", "-D", "-", "--max-time", "10", url]
    assert CurlResult.command(url, follow=False, max_time=2.5, extra=("-v",)) == [
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "--max-time",
        "2.5",
        "-v",
        url,
    ]
    recorded = (CAPTURED / "ok_200.argv").read_text().split()
    assert recorded[:-1] == ["curl", "-sS", "-L", "-o", "/dev/null", "-D", "-", "--max-time", "10"]
