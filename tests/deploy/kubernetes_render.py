"""deploy/kubernetes/ rendered into its objects: with `kubectl kustomize` where kubectl is installed, else with
a minimal stand-in that knows exactly the kustomize features the manifests use (resources, configMapGenerator
with `behavior: replace`, strategic-merge patches of the DaemonSet's containers by name, the namespace and the
common label). The stand-in adds no name-suffix hash; tests compare the two where kubectl exists."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.repo import REPO_ROOT

KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAYS = {name: KUBERNETES / "overlays" / name for name in ("gpu", "cpu-test")}
KUBECTL = shutil.which("kubectl")


def kubectl_kustomize(directory: Path) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    done = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl kustomize {directory}: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def _kustomization(directory: Path) -> dict[str, Any]:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def _config_maps(directory: Path, generators: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    maps = {}
    for generator in generators:
        data = {}
        for entry in generator["files"]:
            key, _, source = entry.partition("=")
            data[key] = (directory / source).read_text()
        labels = generator.get("options", {}).get("labels", {})
        maps[generator["name"]] = {"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": generator["name"], **({"labels": labels} if labels else {})},
                                   "data": data}
    return maps


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge as far as the manifests need it: maps merge, lists of named maps merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i for i in patch):
        merged = [copy.deepcopy(item) for item in base]
        for item in patch:
            at = next((i for i, old in enumerate(merged) if old.get("name") == item["name"]), None)
            if at is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[at] = _merge(merged[at], item)
        return merged
    return copy.deepcopy(patch)


def render_without_kubectl(overlay: Path) -> list[dict[str, Any]]:
    base = _kustomization(BASE)
    objects = [doc for name in base["resources"] for doc in yaml.safe_load_all((BASE / name).read_text()) if doc]
    config_maps = _config_maps(BASE, base.get("configMapGenerator", []))
    layer = _kustomization(overlay)
    for generator in layer.get("configMapGenerator", []):
        assert generator.get("behavior") == "replace", "the stand-in knows replacing generators only"
        config_maps |= _config_maps(overlay, [generator])
    for entry in layer.get("patches", []):
        patch = yaml.safe_load((overlay / entry["path"]).read_text())
        for i, obj in enumerate(objects):
            if (obj["kind"], obj["metadata"]["name"]) == (patch["kind"], patch["metadata"]["name"]):
                objects[i] = _merge(obj, patch)
    objects += config_maps.values()
    common = {k: v for pairs in base.get("labels", []) for k, v in pairs["pairs"].items()}
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(common)
        if obj["kind"] != "Namespace":
            obj["metadata"]["namespace"] = base["namespace"]
    return objects


def render(overlay: Path) -> list[dict[str, Any]]:
    return kubectl_kustomize(overlay) if KUBECTL else render_without_kubectl(overlay)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def config_map(objects: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """A generated ConfigMap by its name before kustomize's hash suffix."""
    [found] = [cm for cm in by_kind(objects, "ConfigMap") if cm["metadata"]["name"].startswith(prefix + "-")
               or cm["metadata"]["name"] == prefix]
    return found
