"""The upload routes' multipart/form-data parser: what RFC 7578 (and RFC 2046, RFC 5987) allow, and
malformed bodies refused with one-line errors."""

import pytest

from fmnist.errors import InputError
from fmnist.serve.multipart import parse_header, parse_multipart

CT = "multipart/form-data; boundary=XyZ"


def part(disposition: str, data: bytes = b"DATA", extra: str = "") -> bytes:
    return f"--XyZ\r\nContent-Disposition: {disposition}\r\n{extra}\r\n".encode() + data + b"\r\n"


def body(*parts: bytes, end: bytes = b"--XyZ--\r\n") -> bytes:
    return b"".join(parts) + end


def test_files_and_fields_in_order():
    b = body(
        part('form-data; name="file"; filename="a.png"', b"A", "Content-Type: image/png\r\n"),
        part('form-data; name="invert"', b"no"),
        part('form-data; name="file"; filename="b.png"', b"B--XyZ\r\n"),  # not after a CRLF: data
    )
    assert parse_multipart(b, CT, 8) == ([("a.png", b"A"), ("b.png", b"B--XyZ\r\n")], {"invert": "no"})


@pytest.mark.parametrize(
    "content_type",
    [
        "Multipart/Form-Data; Boundary=XyZ",  # media type and parameter names are case-insensitive
        'multipart/form-data; boundary="XyZ"',  # quoted
        "multipart/form-data;boundary=XyZ;charset=utf-8",  # no spaces, another parameter
    ],
)
def test_content_type_spellings(content_type):
    b = body(part('form-data; name="file"; filename="a.png"'))
    assert parse_multipart(b, content_type, 8)[0] == [("a.png", b"DATA")]


@pytest.mark.parametrize(
    "disposition,filename",
    [
        ("form-data; name=\"file\"; filename*=UTF-8''%E2%82%AC%20rates.png", "€ rates.png"),
        ('form-data; name="file"; filename="euro.png"; filename*=utf-8\'en\'%E2%82%AC.png', "€.png"),
        ("form-data; name=\"file\"; filename*=iso-8859-1''caf%E9.png", "café.png"),
        ('FORM-DATA; NAME="file"; FILENAME="shout.png"', "shout.png"),
        ("form-data; name=file; filename=bare.png", "bare.png"),
        ('form-data; name="file"; filename="semi;colon \\"q\\".png"', 'semi;colon "q".png'),
        ('form-data; name="file"; filename="日本.png"', "日本.png"),  # UTF-8 bytes in the header (RFC 7578 4.2)
        ('form-data; name="file"; filename=""', ""),
    ],
)
def test_filename_forms(disposition, filename):
    b = body(part(disposition))
    assert parse_multipart(b, CT, 8)[0] == [(filename, b"DATA")]


def test_preamble_padding_epilogue_and_lowercase_headers():
    b = (
        b"This is the preamble.\r\n--XyZ  \r\ncontent-disposition: form-data; name=file; filename=a.png\r\n\r\nA"
        b"\r\n--XyZ--\r\nThis is the epilogue."
    )
    assert parse_multipart(b, CT, 8)[0] == [("a.png", b"A")]


def test_other_fields_are_kept_and_a_body_without_files_has_none():
    assert parse_multipart(body(part('form-data; name="note"', b"hi")), CT, 8) == ([], {"note": "hi"})
    assert parse_multipart(b"--XyZ--\r\n", CT, 8) == ([], {})


MALFORMED = [
    ("no boundary", "multipart/form-data", body(part('form-data; name="file"; filename="a"')), "without a boundary"),
    ("empty boundary", 'multipart/form-data; boundary=""', b"--\r\n", "without a boundary"),
    ("boundary never occurs", CT, b"hello", "never occurs"),
    ("truncated", CT, part('form-data; name="file"; filename="a"')[:-8], "truncated"),
    ("no closing delimiter", CT, part('form-data; name="file"; filename="a"'), "truncated"),
    ("headers never end", CT, b"--XyZ\r\nContent-Disposition: form-data; name=file", "truncated"),
    ("part without disposition", CT, body(b"--XyZ\r\nContent-Type: image/png\r\n\r\nA\r\n"), "Content-Disposition"),
    ("text in the file field", CT, body(part('form-data; name="file"', b"abc")), "must be a file upload"),
    ("unknown charset", CT, body(part("form-data; name=file; filename*=koi8-r''%C1.png")), "charset 'koi8-r'"),
    ("bad RFC 5987 form", CT, body(part("form-data; name=file; filename*=a.png")), "RFC 5987"),
    ("bad UTF-8", CT, body(part("form-data; name=file; filename*=utf-8''%FF.png")), "not valid utf-8"),
]


@pytest.mark.parametrize("content_type,data,words", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_bodies_are_one_line_errors(content_type, data, words):
    with pytest.raises(InputError) as caught:
        parse_multipart(data, content_type, 8)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_too_many_files():
    b = body(*(part(f'form-data; name="file"; filename="{i}.png"') for i in range(3)))
    assert len(parse_multipart(b, CT, 3)[0]) == 3
    with pytest.raises(InputError, match="at most 2 per request"):
        parse_multipart(b, CT, 2)


def test_parse_header():
    assert parse_header('Form-Data; Name="a"; x; y=1; name="b"') == ("form-data", {"name": "a", "y": "1"})
    assert parse_header("text/plain") == ("text/plain", {})
    assert parse_header("") == ("", {})


@pytest.mark.parametrize(
    "value",
    [
        "",
        "form-data",
        'form-data; name="file"; filename="a.png"',
        "form-data;name=file;",
        'form-data; filename="a;b.png"',  # ';' inside quotes
        'form-data; filename="a\\";b.png"',  # an escaped quote
        'form-data; filename="open; name=x',  # a quote never closed
        'a"b;c"d; e="f"',  # quotes inside a token
        'x; y="\\\\"; z=1',
        '"; "',
    ],
)
def test_header_segments_split_as_the_scan_does(value):
    from fmnist.serve.multipart import _scan, _segments

    assert _segments(value) == _scan(value)
