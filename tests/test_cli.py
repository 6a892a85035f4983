"""The `ocv` command: serve prints what a client needs; resources add/list manage accounts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from opencustomvision.cli import main
from opencustomvision.domain.scenario_keys import resource_for_scenario_keys
from opencustomvision.storage.db import create_db_engine, session_factory
from tests.conftest import _free_port

pytestmark = pytest.mark.slow


def test_resources_add_prints_working_keys_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resources", "add", "team-a", "--json", "--data-dir", str(tmp_path)]) == 0
    created = json.loads(capsys.readouterr().out)
    assert set(created) >= {"trainingKey", "predictionKey", "predictionResourceId", "scenarioApiKey", "scenarioApiSecret"}
    assert main(["resources", "add", "team-a", "--data-dir", str(tmp_path)]) == 1
    capsys.readouterr()
    assert main(["resources", "list", "--data-dir", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "team-a" in listing and created["trainingKey"] not in listing and created["predictionResourceId"] in listing
    assert created["scenarioApiSecret"] not in listing
    assert main(["resources", "scenario-keys", "team-a", "--json", "--data-dir", str(tmp_path)]) == 0
    renewed = json.loads(capsys.readouterr().out)
    assert renewed["scenarioApiSecret"] != created["scenarioApiSecret"]
    engine = create_db_engine(f"sqlite:///{tmp_path.resolve() / 'ocv.sqlite3'}")
    with session_factory(engine)() as session:
        assert resource_for_scenario_keys(session, renewed["scenarioApiKey"], renewed["scenarioApiSecret"]).name == "team-a"
        assert resource_for_scenario_keys(session, created["scenarioApiKey"], created["scenarioApiSecret"]) is None
    engine.dispose()
    assert main(["resources", "scenario-keys", "nobody", "--data-dir", str(tmp_path)]) == 1


def test_serve_prints_endpoint_and_keys_and_answers(tmp_path: Path) -> None:
    port = _free_port()
    environment = dict(os.environ, OCV_TRAINING_KEY="fixed-training-key", OCV_PREDICTION_KEY="fixed-prediction-key",
                       OCV_SCENARIO_API_KEY="api_fixed", OCV_SCENARIO_API_SECRET="fixed-secret")
    server = subprocess.Popen(
        [sys.executable, "-m", "opencustomvision.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while not any("Scenario API secret" in line for line in lines):
            assert time.monotonic() < deadline and server.poll() is None, "".join(lines)
            lines.append(server.stdout.readline())  # type: ignore[union-attr]
        banner = "".join(lines)
        assert f"http://127.0.0.1:{port}" in banner
        assert "fixed-training-key" in banner and "fixed-prediction-key" in banner
        assert f"http://127.0.0.1:{port}/v1" in banner and "api_fixed" in banner and "fixed-secret" in banner
        # A resource added while the server runs can use it at once.
        added = subprocess.run([sys.executable, "-m", "opencustomvision.cli", "resources", "add", "late", "--json",
                                "--data-dir", str(tmp_path)], capture_output=True, text=True, check=True)
        late = json.loads(added.stdout)
        late_key = late["trainingKey"]
        url = f"http://127.0.0.1:{port}/customvision/v3.3/training/projects"
        while True:
            try:
                answer = httpx.get(url, headers={"Training-Key": "fixed-training-key"})
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.2)
        assert answer.status_code == 200
        assert httpx.get(url, headers={"Training-Key": late_key}).status_code == 200
        models = f"http://127.0.0.1:{port}/v1/models"
        assert httpx.get(models, auth=("api_fixed", "fixed-secret")).status_code == 200
        assert httpx.get(models, auth=(late["scenarioApiKey"], late["scenarioApiSecret"])).status_code == 200
        assert httpx.get(models, auth=("api_fixed", late["scenarioApiSecret"])).status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_a_data_folder_from_before_scenario_keeps_its_keys_and_gains_a_scenario_pair(tmp_path: Path) -> None:
    from opencustomvision.cli import prepare_default_resource
    from opencustomvision.config import Settings

    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'ocv.sqlite3'}")
    first = prepare_default_resource(settings)
    stored = tmp_path / "default-resource.json"
    older = {key: value for key, value in json.loads(stored.read_text()).items() if not key.startswith("scenario")}
    stored.write_text(json.dumps(older))
    again = prepare_default_resource(settings)
    assert (again.training_key, again.prediction_key) == (first.training_key, first.prediction_key)
    assert again.scenario_api_key and again.scenario_api_secret
    assert prepare_default_resource(settings).scenario_api_secret == again.scenario_api_secret
