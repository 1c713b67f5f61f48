"""What a curl run inside a pod said: the HTTP responses it saw and how it ended.

The suites run curl the way the Istio docs do (`curl -sS -L -o /dev/null -D - URL`), so stdout is
curl's header dump: one block per response, redirects and interim 1xx responses included. A
failing hop after a redirect (e.g. `301 → TLS handshake fails`) shows up as headers on stdout plus
a non-zero exit code and a `curl: (N) ...` line on stderr; CurlResult keeps all three together so
an assertion can say exactly where the chain broke.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import overload

# Names for the exit codes an egress test actually meets; wording follows curl's own messages.
CURL_EXIT_NAMES: dict[int, str] = {
    1: "unsupported protocol",
    2: "failed to initialize",
    3: "URL malformed",
    5: "couldn't resolve proxy",
    6: "couldn't resolve host",
    7: "couldn't connect",
    8: "weird server reply",
    16: "HTTP/2 error",
    18: "partial file",
    22: "HTTP error (--fail)",
    23: "write error",
    26: "read error",
    27: "out of memory",
    28: "timeout",
    35: "SSL connect error",
    43: "bad function argument",
    47: "too many redirects",
    52: "empty reply from server",
    53: "SSL crypto engine not found",
    55: "send failure",
    56: "recv failure",
    58: "problem with the local client certificate",
    59: "couldn't use specified SSL cipher",
    60: "peer certificate cannot be authenticated",
    61: "unrecognized transfer encoding",
    77: "problem reading the CA cert",
    80: "SSL shutdown failed",
    83: "SSL issuer check failed",
    90: "SSL pinned public key mismatch",
    91: "invalid SSL certificate status",
    92: "HTTP/2 stream error",
    95: "HTTP/3 error",
    97: "proxy handshake error",
    # Not curl's own codes: what `kubectl exec` / a shell report when curl is missing from the image.
    126: "command not executable",
    127: "command not found (is curl in the image?)",
}

_STATUS_LINE = re.compile(r"^HTTP/(\d(?:\.\d)?) +(\d{3})(?: +(.*))?$")
_HEADER_LINE = re.compile(r"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*(.*)$")
# curl -v marks received header lines with "< "; the blank line ending a block is a bare "<".
_VERBOSE_RECEIVED = re.compile(r"^< ?(.*)$")


@dataclass(frozen=True)
class Headers:
    """Response headers in the order received; lookups ignore case, repeated names are kept."""

    pairs: tuple[tuple[str, str], ...] = ()

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower()
        for key, value in self.pairs:
            if key.lower() == wanted:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.pairs if key.lower() == wanted]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)


@dataclass(frozen=True)
class HttpResponse:
    http_version: str  # "1.1", "2", "3"
    status: int
    reason: str  # "" for HTTP/2 and later, which have no reason phrase
    headers: Headers = field(default_factory=Headers)

    @property
    def location(self) -> str | None:
        return self.headers.get("location")

    def __str__(self) -> str:
        return f"HTTP/{self.http_version} {self.status} {self.reason}".rstrip()


@dataclass(frozen=True)
class CurlResult:
    exit_code: int
    responses: tuple[HttpResponse, ...]  # final (non-1xx) responses, one per hop of a redirect chain
    stderr: str = ""
    interim_responses: tuple[HttpResponse, ...] = ()  # 1xx, e.g. "100 Continue"
    write_out: str = ""  # stdout text that is not a header dump, e.g. the output of -w '%{http_code}'
    stdout: str = field(default="", repr=False)

    @classmethod
    def parse(cls, exit_code: int, stdout: str | bytes, stderr: str | bytes = "") -> CurlResult:
        return parse_curl_output(exit_code, stdout, stderr)

    @classmethod
    def command(
        cls, url: str, *, follow: bool = True, max_time: float = 10, extra: tuple[str, ...] | list[str] = ()
    ) -> list[str]:
        return curl_command(url, follow=follow, max_time=max_time, extra=extra)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def statuses(self) -> list[int]:
        return [response.status for response in self.responses]

    @property
    def final_response(self) -> HttpResponse | None:
        return self.responses[-1] if self.responses else None

    @property
    def final_status(self) -> int | None:
        if self.responses:
            return self.responses[-1].status
        # Only `-w '%{http_code}'` was asked for; curl writes 000 when no response came back.
        code = self.write_out.strip()
        if re.fullmatch(r"\d{3}", code) and code != "000":
            return int(code)
        return None

    @property
    def error_name(self) -> str | None:
        if self.exit_code == 0:
            return None
        return CURL_EXIT_NAMES.get(self.exit_code)

    @property
    def error_message(self) -> str:
        """curl's own one-line complaint ("curl: (35) ..."), or the last meaningful stderr line."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        complaints = [line for line in lines if line.startswith("curl: (")]
        if complaints:
            return complaints[-1]
        # -v noise: "* " info, "> " sent, "< " received, "{ " / "} " data.
        plain = [line for line in lines if line[:2] not in ("* ", "> ", "< ", "{ ", "} ") and line not in ("<", ">")]
        return plain[-1] if plain else ""

    def describe(self) -> str:
        """One paragraph for an assertion message, e.g.
        "301 Moved Permanently (location: https://edition.cnn.com/) → exit 35 (SSL connect error): curl: (35) ..."
        """
        hops = [_describe_response(response) for response in self.responses]
        if not hops:
            hops = ["no HTTP response"]
        if self.exit_code != 0:
            name = self.error_name or "unknown curl error"
            failure = f"exit {self.exit_code} ({name})"
            if self.error_message:
                failure += f": {self.error_message}"
            hops.append(failure)
        return " → ".join(hops)


def _describe_response(response: HttpResponse) -> str:
    text = f"{response.status} {response.reason}".rstrip()
    if 300 <= response.status < 400 and response.location:
        text += f" (location: {response.location})"
    return text


def curl_command(
    url: str, *, follow: bool = True, max_time: float = 10, extra: tuple[str, ...] | list[str] = ()
) -> list[str]:
    """The argv the suites run in a pod: headers of every hop on stdout, the body discarded."""
    argv = ["curl", "-sS"]
    if follow:
        argv.append("-L")
    argv += ["-o", "/dev/null", "-D", "-", "--max-time", f"{max_time:g}"]
    argv += list(extra)
    argv.append(url)
    return argv


def parse_curl_output(exit_code: int, stdout: str | bytes, stderr: str | bytes = "") -> CurlResult:
    """Turn a curl run into a CurlResult.

    Responses come from the header dump on stdout (`-D -`); when stdout has none but stderr is a
    `-v` trace, they come from its "< " lines instead. Text on stdout outside header blocks is kept
    as `write_out`.
    """
    out_text = _text(stdout)
    err_text = _text(stderr)
    blocks, other = _header_blocks(_lines(out_text))
    if not blocks:
        verbose = [m.group(1) for line in _lines(err_text) if (m := _VERBOSE_RECEIVED.match(line))]
        blocks, _ = _header_blocks(verbose)
    final = tuple(r for r in blocks if not 100 <= r.status < 200)
    interim = tuple(r for r in blocks if 100 <= r.status < 200)
    return CurlResult(
        exit_code=exit_code,
        responses=final,
        stderr=err_text,
        interim_responses=interim,
        write_out="\n".join(other).strip(),
        stdout=out_text,
    )


def _text(data: str | bytes) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return data


def _lines(text: str) -> list[str]:
    # Not str.splitlines(): it also splits on \x0b, \x1c, U+2028..., which may sit inside a header value.
    lines = re.split(r"\r?\n", text)
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _header_blocks(lines: list[str]) -> tuple[list[HttpResponse], list[str]]:
    """Split lines into header blocks (status line, headers, blank line) and everything else."""
    responses: list[HttpResponse] = []
    other: list[str] = []
    i = 0
    while i < len(lines):
        status = _STATUS_LINE.match(lines[i])
        if not status:
            other.append(lines[i])
            i += 1
            continue
        version, code, reason = status.groups()
        pairs: list[tuple[str, str]] = []
        i += 1
        while i < len(lines) and lines[i] != "":
            line = lines[i]
            if line[:1] in (" ", "\t") and pairs:
                # obs-fold: a continuation of the previous header's value
                name, value = pairs[-1]
                pairs[-1] = (name, f"{value} {line.strip()}")
            else:
                header = _HEADER_LINE.match(line)
                if not header:
                    break  # not a header: the block was cut short, leave the line to the outer loop
                pairs.append((header.group(1), header.group(2).rstrip()))
            i += 1
        if i < len(lines) and lines[i] == "":
            i += 1
        responses.append(HttpResponse(version, int(code), (reason or "").strip(), Headers(tuple(pairs))))
    return responses, other
