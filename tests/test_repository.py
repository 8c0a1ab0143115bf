"""The committed config.toml and openapi/openapi.json stay in step with the code."""

from __future__ import annotations

import json
import re
import tomllib

from pydantic import BaseModel

from ddx_omni.cli import openapi_document
from ddx_omni.core.settings import Settings, load_settings

from .conftest import REPO


def test_config_toml_lists_every_setting_with_its_default():
    text = (REPO / "config.toml").read_text()
    data = tomllib.loads(text)
    defaults = Settings()
    for section, field in Settings.model_fields.items():
        assert isinstance(field.default, BaseModel)
        for key in type(field.default).model_fields:
            value = getattr(getattr(defaults, section), key)
            if key in data.get(section, {}):
                given = data[section][key]
                if key == "models":
                    given = [dict(entry) for entry in given]
                    value = [m.model_dump(exclude_none=True, exclude_defaults=True) for m in value]
                    given = [{k: v for k, v in g.items() if k != "multimodal" or v} for g in given]
                assert given == value, f"[{section}].{key} in config.toml is not the default"
            else:  # computed defaults are documented as a commented line
                assert re.search(rf"^# {key} = ", text, re.M), f"[{section}].{key} missing from config.toml"


def test_config_toml_loads():
    assert load_settings(REPO / "config.toml", environ={}) == Settings()


def test_committed_openapi_matches_the_app():
    committed = json.loads((REPO / "openapi" / "openapi.json").read_text())
    assert committed == json.loads(json.dumps(openapi_document())), "run `ddx-omni openapi` and commit"
