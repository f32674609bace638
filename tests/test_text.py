"""File names in messages and in --json: escaped so that no name acts on a terminal, exact in JSON."""

from __future__ import annotations

import base64
import json
import os

from swinir_cli.text import json_name, printable, valid_unicode


def test_printable_escapes_controls_undecodable_bytes_and_direction_overrides() -> None:
    name = "a\x1b[2J\nb\tc\x9b\u202ed" + os.fsdecode(b"\xff") + "é子"
    assert printable(name) == "a\\x1b[2J\\x0ab\\x09c\\x9b\\u202ed\\xffé子"
    assert printable("plain/name_x4.png") == "plain/name_x4.png"


def test_a_name_that_is_not_utf8_keeps_its_bytes_in_json() -> None:
    name = os.fsdecode(b"/in/caf\xe9.png")
    fields = json.loads(json.dumps(json_name("input", name)))
    assert fields["input"] == "/in/caf\\xe9.png" == valid_unicode(name)
    assert base64.b64decode(fields["input_bytes"]) == b"/in/caf\xe9.png"
    assert json_name("input", "/in/été.png") == {"input": "/in/été.png"}
    assert json_name("output", None) == {"output": None}
