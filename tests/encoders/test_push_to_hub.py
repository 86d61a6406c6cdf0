"""`push_to_hub` and `save_pretrained` take what they are asked, or say no: `create_pr` and `revision` were
dropped (the upload went to main), `token=False` used the stored login, and `save_pretrained(push_to_hub=True)`
uploaded nothing without a word. The Hub is a recording stand-in here (no network); what reaches it is checked."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import huggingface_hub
import pytest
import torch

from ecglang.encoders.registry import create_model


class RecordingHub:
    """`huggingface_hub.HfApi` that records each call and the files a folder upload would send."""

    calls: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.calls.append(("HfApi", kwargs))

    def create_repo(self, repo_id: str, **kwargs: Any) -> SimpleNamespace:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return SimpleNamespace(repo_id=repo_id)

    def create_branch(self, repo_id: str, **kwargs: Any) -> None:
        self.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs: Any) -> SimpleNamespace:
        files = sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())
        self.calls.append(("upload_folder", {**kwargs, "files": files}))
        pr = "https://hub/pr/1" if kwargs.get("create_pr") else None
        return SimpleNamespace(commit_url="https://hub/commit/abc", pr_url=pr)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    RecordingHub.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingHub)
    return RecordingHub.calls


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("ecglang-small")


def test_a_pull_request_on_a_branch_is_what_is_uploaded(model, hub) -> None:
    url = model.push_to_hub("me/ecg", create_pr=True, revision="dev", commit_description="review please",
                            private=True, token=False)  # fmt: skip
    assert url == "https://hub/pr/1"
    calls = dict(hub)
    assert calls["HfApi"] == {"token": False}  # no token at all, not the stored login
    assert calls["create_repo"] == {"repo_id": "me/ecg", "private": True, "exist_ok": True}
    assert calls["create_branch"] == {"repo_id": "me/ecg", "branch": "dev", "exist_ok": True}
    upload = calls["upload_folder"]
    assert (upload["revision"], upload["create_pr"], upload["commit_description"]) == ("dev", True, "review please")
    assert {"config.json", "model.safetensors", "README.md", "checksums.json"} <= set(upload["files"])


def test_a_plain_push_commits_to_main(model, hub) -> None:
    assert model.push_to_hub("me/ecg") == "https://hub/commit/abc"
    assert [name for name, _ in hub] == ["HfApi", "create_repo", "upload_folder"]
    upload = dict(hub)["upload_folder"]
    assert upload["revision"] is None and upload["create_pr"] is False


def test_keywords_that_would_be_dropped_are_refused(model, hub, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"push_to_hub\(\) got an unexpected keyword argument 'branch'"):
        model.push_to_hub("me/ecg", branch="dev")
    refused = r"does not take: \['repo_id', 'push_to_hub'\]; upload with push_to_hub\(repo_id\)"
    with pytest.raises(TypeError, match=refused):
        model.save_pretrained(tmp_path / "a", push_to_hub=True, repo_id="me/ecg2")
    with pytest.raises(TypeError, match=r"does not take: \['repo_id', 'safe_serialization'\]"):
        model.save_pretrained(tmp_path / "b", repo_id="me/ecg2", safe_serialization=False)
    assert hub == [] and not (tmp_path / "a").exists()
    # what transformers' callers pass for what this does anyway still works
    model.save_pretrained(tmp_path / "c", safe_serialization=True, max_shard_size="5GB", save_function=torch.save)
    assert (tmp_path / "c" / "model.safetensors").is_file()
