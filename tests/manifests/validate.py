#!/usr/bin/env python3
"""Offline validation of roslan's Kubernetes manifests (issue 5, item 4), run by tests/tests/manifests.rs.

There is neither an API server nor kustomize on the test machine, so this script:

a. reads every kustomization.yaml under manifests/ and renders each one with a small subset of kustomize
   (resources, components, namespace, configMapGenerator, strategic-merge patches). Every referenced file
   must exist, and every other file under manifests/ (README.md files aside) must be referenced by some
   kustomization. A kustomize feature outside the subset is an error, never silently ignored. Components
   that no kustomization uses are the installer's opt-in add-ons: they are rendered on top of manifests/,
   one at a time and all together.
b. validates every object of a built-in kind against kubernetes-validate's strict schemas (the check
   `kubernetes-validate --strict` makes) for each Kubernetes version in K8S_VERSIONS.
c. validates every NetworkAttachmentDefinition against the Multus CRD's openAPIV3Schema
   (network-attachment-definition-crd.yaml next to this script), refusing unknown fields as the API
   server's strict field validation does, and its metadata against Kubernetes' ObjectMeta.
d. runs `roslan validate` on each NetworkAttachmentDefinition's spec.config: it must exit 0 and must not
   report an unknown key, except the keys in PENDING_KEYS.
e. requires cniVersion 0.3.1 or 0.4.0 in each spec.config (MicroK8s' Multus 3.9 reads nothing newer).

It also makes the cross-checks the API server or the kubelet would make at apply time: volume mounts name a
volume, referenced ConfigMaps, ServiceAccounts, Namespaces and NetworkAttachmentDefinitions exist in the same
rendering, object names are valid, `privileged` does not come with `allowPrivilegeEscalation: false`, YAML
and JSON have no duplicate keys.

Usage: validate.py [--repo DIR] [--manifests DIR] [--roslan BIN]
  --repo       the repository (default: two levels above this file)
  --manifests  the tree to check (default: REPO/manifests)
  --roslan     the roslan binary (default: $ROSLAN_BIN, else REPO/target/debug/roslan)
Exit status: 0 when every check passes, 1 when one fails, 2 when the environment is not usable.
"""

import argparse
import copy
import importlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

# Kubernetes versions whose schemas every built-in object must satisfy: 1.33, the oldest release we claim
# (MicroK8s follows upstream closely and keeps a few minors in support), and the newest release the pinned
# kubernetes-validate bundles (it ships 1.28 to 1.37).
K8S_OLDEST = "1.33.0"

# cniVersion values a NetworkAttachmentDefinition may carry: MicroK8s' thin Multus 3.9 reads results up to
# 0.4.0 only.
ALLOWED_CNI_VERSIONS = ("0.3.1", "0.4.0")

# Keys that issues 3 and 4 add to roslan's configuration and that the roslan under test may still report as
# unknown ("warning: ignoring unknown key ..."). Any other unknown key fails the check. Remove an entry once
# roslan implements its key: from then on a misspelling of it fails too.
PENDING_KEYS = {}

NAD_API_VERSION = "k8s.cni.cncf.io/v1"
NAD_KIND = "NetworkAttachmentDefinition"
NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"

KUSTOMIZATION_FILE = "kustomization.yaml"
KUSTOMIZE_KINDS = {
    "Kustomization": "kustomize.config.k8s.io/v1beta1",
    "Component": "kustomize.config.k8s.io/v1alpha1",
}
# The kustomization fields this renderer implements; any other field is reported, not ignored.
KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "namespace", "resources", "components", "patches", "configMapGenerator"}

# Kinds the namespace transformer leaves alone.
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass",
    "StorageClass", "PersistentVolume", "RuntimeClass", "IngressClass", "CSIDriver",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "APIService",
}
# Kinds whose subjects kustomize's namespace transformer rewrites too (its default, setRoleBindingSubjects:
# defaultOnly: a ServiceAccount subject with no namespace or "default" gets the kustomization's).
BINDINGS = {"RoleBinding", "ClusterRoleBinding"}

# Strategic-merge-patch merge keys of the lists in pod specs; other lists are replaced whole (atomic), except
# those below whose merge semantics this renderer does not reproduce.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
}
UNSUPPORTED_PATCH_LISTS = {"ports", "topologySpreadConstraints", "finalizers", "resourceClaims", "schedulingGates"}

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CONFIGMAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
UNKNOWN_KEY_WARNING = re.compile(r'^warning: ignoring unknown key "([^"]+)"')


class Problems:
    """Every failed check, each with where it was found."""

    def __init__(self):
        self.items = []

    def add(self, where, message):
        item = f"{where}: {message}"
        # A kustomization included by several others is rendered several times; report each problem once.
        if item not in self.items:
            self.items.append(item)

    def __len__(self):
        return len(self.items)


PROBLEMS = Problems()


def die(message):
    """The environment cannot run the checks: exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def load_dependencies(repo):
    """Imports the pinned packages of tests/requirements.txt, or explains how to get them."""
    pins = {}
    requirements = repo / "tests" / "requirements.txt"
    for line in requirements.read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[name.lower()] = version
    modules = {}
    for package, module in (("pyyaml", "yaml"), ("jsonschema", "jsonschema"),
                            ("kubernetes-validate", "kubernetes_validate.utils")):
        try:
            modules[module] = importlib.import_module(module)
            installed = importlib.metadata.version(package)
        except ImportError as err:
            die(f"{err} in {sys.executable}; run `make venv` (it installs {requirements})")
        if package in pins and installed != pins[package]:
            die(f"{package} {installed} is installed but {requirements} pins {pins[package]}; run `make venv`")
    return modules


def rel(path):
    """A path for messages: relative to the checked tree's parent when possible."""
    try:
        return str(Path(path).relative_to(BASE))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------------------
# YAML and JSON without duplicate keys


def strict_loader(yaml):
    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        loader.flatten_mapping(node)
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return StrictLoader


def load_yaml_documents(path):
    """The non-empty documents of a YAML file, or None after reporting why it cannot be read."""
    try:
        docs = list(YAML.load_all(path.read_text(), Loader=LOADER))
    except (OSError, UnicodeDecodeError, YAML.YAMLError) as err:
        PROBLEMS.add(rel(path), f"not valid YAML: {err}")
        return None
    return [doc for doc in docs if doc is not None]


def json_object_without_duplicates(text):
    def pairs(items):
        obj = {}
        for key, value in items:
            if key in obj:
                raise ValueError(f"duplicate key {key!r}")
            obj[key] = value
        return obj

    return json.loads(text, object_pairs_hook=pairs)


# ---------------------------------------------------------------------------------------------------------
# (a) kustomizations: read, check references, render


class Kustomization:
    def __init__(self, directory, data):
        self.dir = directory
        self.data = data
        self.kind = data.get("kind")
        self.where = rel(directory / KUSTOMIZATION_FILE)

    def list(self, field):
        value = self.data.get(field) or []
        if not isinstance(value, list):
            PROBLEMS.add(self.where, f"`{field}` must be a list")
            return []
        return value


def read_kustomizations(root):
    """Every kustomization under root, checked on its own; also the set of files they reference."""
    kusts = {}
    referenced = set()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name in ("kustomization.yml", "Kustomization"):
            PROBLEMS.add(rel(path), f"rename to {KUSTOMIZATION_FILE} (the only name this check reads)")
        if not (path.is_file() and path.name == KUSTOMIZATION_FILE):
            continue
        docs = load_yaml_documents(path)
        if docs is None:
            continue
        if len(docs) != 1 or not isinstance(docs[0], dict):
            PROBLEMS.add(rel(path), "must hold exactly one mapping")
            continue
        k = Kustomization(path.parent, docs[0])
        kusts[path.parent.resolve()] = k
        expected = KUSTOMIZE_KINDS.get(k.kind)
        if expected is None:
            PROBLEMS.add(k.where, f"kind must be one of {sorted(KUSTOMIZE_KINDS)}, not {k.kind!r}")
        elif k.data.get("apiVersion") != expected:
            PROBLEMS.add(k.where, f"a {k.kind} needs apiVersion {expected}, not {k.data.get('apiVersion')!r}")
        for field in sorted(set(k.data) - KUSTOMIZATION_FIELDS):
            PROBLEMS.add(k.where, f"field `{field}` is not supported by validate.py's renderer (supported: "
                                  f"{', '.join(sorted(KUSTOMIZATION_FIELDS))}); extend the renderer first")
        for entry in k.list("resources"):
            referenced.add(check_reference(k, entry, "resources", root, allow_dir=True))
        for entry in k.list("components"):
            referenced.add(check_reference(k, entry, "components", root, allow_dir=True, require_dir=True))
        for patch in k.list("patches"):
            if isinstance(patch, dict) and "path" in patch:
                referenced.add(check_reference(k, patch["path"], "patches", root))
        for generator in k.list("configMapGenerator"):
            if isinstance(generator, dict):
                for entry in generator.get("files") or []:
                    entry = str(entry)
                    source = entry.partition("=")[2] if "=" in entry else entry
                    referenced.add(check_reference(k, source, "configMapGenerator files", root))
    referenced.discard(None)
    return kusts, referenced


def check_reference(k, entry, field, root, allow_dir=False, require_dir=False):
    """Resolves one reference of a kustomization; reports what kustomize would refuse."""
    if not isinstance(entry, str) or not entry:
        PROBLEMS.add(k.where, f"{field}: {entry!r} is not a path")
        return None
    if "://" in entry or entry.startswith(("github.com/", "git@")):
        PROBLEMS.add(k.where, f"{field}: {entry} is remote; manifests must be self-contained")
        return None
    path = (k.dir / entry).resolve()
    if not path.exists():
        PROBLEMS.add(k.where, f"{field}: {entry} does not exist")
        return None
    if root.resolve() not in (path, *path.parents):
        PROBLEMS.add(k.where, f"{field}: {entry} is outside {rel(root)}")
        return None
    if path.is_dir():
        if not allow_dir:
            PROBLEMS.add(k.where, f"{field}: {entry} is a directory")
        elif not (path / KUSTOMIZATION_FILE).is_file():
            PROBLEMS.add(k.where, f"{field}: {entry} has no {KUSTOMIZATION_FILE}")
        return path
    if require_dir:
        PROBLEMS.add(k.where, f"{field}: {entry} must be a directory with a {KUSTOMIZATION_FILE}")
    # kustomize's default load restrictor: files must be in or below the kustomization's own directory.
    if k.dir.resolve() not in path.parents:
        PROBLEMS.add(k.where, f"{field}: {entry} is a file outside this kustomization's directory, which "
                              "kustomize refuses; reference a directory with its own kustomization instead")
    return path


def check_every_file_referenced(root, referenced):
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name == KUSTOMIZATION_FILE or path.suffix.lower() == ".md":
            continue
        if path.resolve() not in referenced:
            PROBLEMS.add(rel(path), "not referenced by any kustomization: `kubectl apply -k` would never see it")


class Rendering:
    """The objects one `kubectl apply -k` would send, and where each came from."""

    def __init__(self, name):
        self.name = name
        self.objects = []  # (object, origin)


def render(kusts, directory, extra_components=(), stack=()):
    k = kusts.get(directory)
    if k is None:
        return []
    if directory in stack:
        PROBLEMS.add(k.where, "kustomizations include each other in a cycle")
        return []
    if k.kind != "Kustomization":
        PROBLEMS.add(k.where, f"a {k.kind} cannot be rendered on its own or listed under `resources`")
        return []
    objects = load_resources(kusts, k, stack + (directory,))
    for entry in k.list("components"):
        apply_component(kusts, (k.dir / entry).resolve(), objects, stack + (directory,))
    for component in extra_components:
        apply_component(kusts, component, objects, stack + (directory,))
    objects.extend(generate(k))
    apply_patches(k, objects)
    apply_namespace(k, objects)
    return objects


def load_resources(kusts, k, stack):
    objects = []
    for entry in k.list("resources"):
        path = (k.dir / str(entry)).resolve()
        if path.is_dir():
            objects.extend(render(kusts, path, stack=stack))
        elif path.is_file():
            for doc in load_yaml_documents(path) or []:
                where = rel(path)
                if not isinstance(doc, dict):
                    PROBLEMS.add(where, "a resource document must be a mapping")
                    continue
                for field in ("apiVersion", "kind"):
                    if not isinstance(doc.get(field), str) or not doc.get(field):
                        PROBLEMS.add(where, f"resource without `{field}`")
                if not isinstance(doc.get("metadata"), dict) or not doc["metadata"].get("name"):
                    PROBLEMS.add(where, "resource without metadata.name")
                    continue
                objects.append((doc, where))
    return objects


def apply_component(kusts, directory, objects, stack):
    c = kusts.get(directory)
    if c is None:
        return
    if c.kind != "Component":
        PROBLEMS.add(c.where, "listed under `components` but is not a Component")
        return
    if directory in stack:
        PROBLEMS.add(c.where, "components include each other in a cycle")
        return
    objects.extend(load_resources(kusts, c, stack + (directory,)))
    for entry in c.list("components"):
        apply_component(kusts, (c.dir / entry).resolve(), objects, stack + (directory,))
    objects.extend(generate(c))
    apply_patches(c, objects)
    apply_namespace(c, objects)


def generate(k):
    generated = []
    for generator in k.list("configMapGenerator"):
        if not isinstance(generator, dict):
            PROBLEMS.add(k.where, "configMapGenerator entries must be mappings")
            continue
        unsupported = set(generator) - {"name", "files", "literals", "options", "behavior"}
        if unsupported:
            PROBLEMS.add(k.where, f"configMapGenerator fields {sorted(unsupported)} are not supported by the renderer")
        if generator.get("behavior", "create") != "create":
            PROBLEMS.add(k.where, "configMapGenerator behavior other than `create` is not supported by the renderer")
        options = generator.get("options") or {}
        if set(options) - {"disableNameSuffixHash"}:
            PROBLEMS.add(k.where, f"configMapGenerator options {sorted(set(options) - {'disableNameSuffixHash'})} "
                                  "are not supported by the renderer")
        if options.get("disableNameSuffixHash") is not True:
            # kustomize would append a content hash to the name and rewrite references; the renderer does not
            # reproduce that hash, and the examples are bare Pods, which could not be re-applied with a new name.
            PROBLEMS.add(k.where, f"configMapGenerator {generator.get('name')!r}: "
                                  "set options.disableNameSuffixHash: true")
        name = generator.get("name")
        if not isinstance(name, str) or not name:
            PROBLEMS.add(k.where, "configMapGenerator without a name")
            continue
        data = {}
        for entry in generator.get("files") or []:
            key, _, source = str(entry).rpartition("=") if "=" in str(entry) else (None, None, str(entry))
            path = (k.dir / source).resolve()
            key = key or path.name
            try:
                data_value = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                PROBLEMS.add(k.where, f"configMapGenerator {name}: cannot read {source} as UTF-8 text: {err}")
                continue
            add_configmap_key(k, name, data, key, data_value)
        for entry in generator.get("literals") or []:
            key, sep, value = str(entry).partition("=")
            if not sep:
                PROBLEMS.add(k.where, f"configMapGenerator {name}: literal {entry!r} is not KEY=VALUE")
                continue
            add_configmap_key(k, name, data, key, value)
        size = sum(len(key) + len(value.encode()) for key, value in data.items())
        if size > 1024 * 1024:
            PROBLEMS.add(k.where, f"configMapGenerator {name}: {size} bytes, over the 1 MiB ConfigMap limit")
        configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
        generated.append((configmap, f"{k.where} configMapGenerator {name}"))
    return generated


def add_configmap_key(k, name, data, key, value):
    if not CONFIGMAP_KEY.match(key):
        PROBLEMS.add(k.where, f"configMapGenerator {name}: {key!r} is not a valid ConfigMap key")
    elif key in data:
        PROBLEMS.add(k.where, f"configMapGenerator {name}: key {key!r} given twice")
    else:
        data[key] = value


def apply_patches(k, objects):
    for patch in k.list("patches"):
        if not isinstance(patch, dict):
            PROBLEMS.add(k.where, "patches entries must be mappings")
            continue
        unsupported = set(patch) - {"path", "patch", "target"}
        if unsupported:
            PROBLEMS.add(k.where, f"patch fields {sorted(unsupported)} are not supported by the renderer")
        if "path" in patch:
            where = rel((k.dir / str(patch["path"])).resolve())
            docs = load_yaml_documents((k.dir / str(patch["path"])).resolve()) or []
        elif "patch" in patch:
            where = f"{k.where} inline patch"
            try:
                docs = [doc for doc in YAML.load_all(str(patch["patch"]), Loader=LOADER) if doc is not None]
            except YAML.YAMLError as err:
                PROBLEMS.add(where, f"not valid YAML: {err}")
                continue
        else:
            PROBLEMS.add(k.where, "a patch needs `path` or `patch`")
            continue
        if len(docs) != 1:
            PROBLEMS.add(where, "a patch must hold exactly one document")
            continue
        body = docs[0]
        if isinstance(body, list):
            PROBLEMS.add(where, "JSON 6902 patches are not supported by the renderer; write a strategic merge patch")
            continue
        if not isinstance(body, dict):
            PROBLEMS.add(where, "a strategic merge patch must be a mapping")
            continue
        target = patch.get("target") or {
            "kind": body.get("kind"),
            "name": (body.get("metadata") or {}).get("name"),
            "namespace": (body.get("metadata") or {}).get("namespace"),
        }
        if not isinstance(target, dict) or set(target) - {"kind", "name", "namespace"}:
            PROBLEMS.add(where, "only kind, name and namespace are supported in a patch target")
            continue
        if body.get("kind") and target.get("kind") and body["kind"] != target["kind"]:
            PROBLEMS.add(where, f"the patch is a {body['kind']} but targets {target['kind']}")
        body = copy.deepcopy(body)
        body.pop("apiVersion", None)
        body.pop("kind", None)
        metadata = body.get("metadata")
        if isinstance(metadata, dict):
            metadata.pop("name", None)
            metadata.pop("namespace", None)
            if not metadata:
                body.pop("metadata")
        matched = 0
        for i, (obj, origin) in enumerate(objects):
            meta = obj.get("metadata") or {}
            if target.get("kind") and obj.get("kind") != target["kind"]:
                continue
            if target.get("name") and meta.get("name") != target["name"]:
                continue
            if target.get("namespace") and meta.get("namespace") != target["namespace"]:
                continue
            objects[i] = (strategic_merge(obj, body, where), f"{origin} + {where}")
            matched += 1
        if not matched:
            PROBLEMS.add(where, f"the patch matches no object (target {target})")


def strategic_merge(base, patch, where):
    """A strategic merge patch restricted to what pod specs need (see MERGE_KEYS)."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(base)
    for key, value in patch.items():
        if key.startswith("$"):
            PROBLEMS.add(where, f"patch directive {key} is not supported here by the renderer")
            continue
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, list) and key in UNSUPPORTED_PATCH_LISTS:
            PROBLEMS.add(where, f"patching the list `{key}` is not supported by the renderer")
        elif isinstance(value, list) and key in MERGE_KEYS:
            merged[key] = merge_list(merged.get(key) or [], value, MERGE_KEYS[key], f"{where} {key}")
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = strategic_merge(merged[key], value, where)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def merge_list(base, patch, merge_key, where):
    merged = copy.deepcopy(base)
    patch_keys = []
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            PROBLEMS.add(where, f"each item needs its merge key `{merge_key}`")
            continue
        index = next((i for i, old in enumerate(merged) if old.get(merge_key) == item[merge_key]), None)
        directive = item.get("$patch")
        if directive == "delete":
            if index is None:
                PROBLEMS.add(where, f"`$patch: delete` of {item[merge_key]!r}, which is not there")
            else:
                del merged[index]
            continue
        if directive is not None:
            PROBLEMS.add(where, f"`$patch: {directive}` is not supported by the renderer")
            continue
        patch_keys.append(item[merge_key])
        if index is None:
            merged.append(copy.deepcopy(item))
        else:
            merged[index] = strategic_merge(merged[index], item, where)
    return order_like_kubernetes(merged, base, patch_keys, merge_key)


def order_like_kubernetes(merged, base, patch_keys, merge_key):
    """The order Kubernetes' strategic merge gives a merged list (and so kustomize's output).

    Items named in the patch, in patch order, are merged with the others, in their original order; an item
    of the original list goes first only when both it and the next patch item were in the original and it
    came before that one there. In effect new items land in front of the existing ones.
    """
    original = [item.get(merge_key) for item in base]
    from_patch = sorted((m for m in merged if m.get(merge_key) in patch_keys),
                        key=lambda m: patch_keys.index(m.get(merge_key)))
    others = [m for m in merged if m.get(merge_key) not in patch_keys]
    ordered = []
    while others or from_patch:
        if not from_patch:
            ordered.append(others.pop(0))
        elif not others:
            ordered.append(from_patch.pop(0))
        else:
            left, right = others[0].get(merge_key), from_patch[0].get(merge_key)
            if left in original and right in original and original.index(left) < original.index(right):
                ordered.append(others.pop(0))
            else:
                ordered.append(from_patch.pop(0))
    return ordered


def apply_namespace(k, objects):
    namespace = k.data.get("namespace")
    if namespace is None:
        return
    if not isinstance(namespace, str) or not DNS1123_LABEL.match(namespace):
        PROBLEMS.add(k.where, f"namespace {namespace!r} is not a valid namespace name")
        return
    for obj, origin in objects:
        kind = obj.get("kind")
        if kind in BINDINGS:
            for subject in obj.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount" and subject.get("namespace") in (None, "default"):
                    subject["namespace"] = namespace
        if kind == "Namespace":
            if obj["metadata"].get("name") != namespace:
                PROBLEMS.add(origin, f"Namespace {obj['metadata'].get('name')} rendered by a kustomization "
                                     f"whose objects go to namespace {namespace}")
        elif kind not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace


# ---------------------------------------------------------------------------------------------------------
# Cross-checks within one rendering


def pod_specs(obj):
    """The pod specs an object carries, with their paths."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Pod":
        return [(spec, "spec")]
    if kind in ("DaemonSet", "Deployment", "StatefulSet", "ReplicaSet", "Job", "ReplicationController"):
        return [((spec.get("template") or {}).get("spec") or {}, "spec.template.spec")]
    if kind == "CronJob":
        template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
        return [(template.get("spec") or {}, "spec.jobTemplate.spec.template.spec")]
    return []


def identity(obj):
    meta = obj.get("metadata") or {}
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return (group, obj.get("kind"), meta.get("namespace"), meta.get("name"))


def describe(obj):
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{obj.get('kind')}/{namespace + '/' if namespace else ''}{meta.get('name')}"


def cross_check(rendering):
    objects = rendering.objects
    seen = {}
    for obj, origin in objects:
        key = identity(obj)
        if key in seen:
            PROBLEMS.add(origin, f"{describe(obj)} is rendered twice by {rendering.name} (also from {seen[key]})")
        seen[key] = origin
    present = {(o.get("kind"), (o.get("metadata") or {}).get("namespace"), (o.get("metadata") or {}).get("name"))
               for o, _ in objects}
    namespaces = {name for kind, _, name in present if kind == "Namespace"}
    for obj, origin in objects:
        meta = obj.get("metadata") or {}
        where = f"{origin} {describe(obj)}"
        name = meta.get("name")
        pattern = DNS1123_LABEL if obj.get("kind") == "Namespace" else DNS1123_SUBDOMAIN
        if not isinstance(name, str) or len(name) > 253 or not pattern.match(name):
            PROBLEMS.add(where, f"metadata.name {name!r} is not a valid name for a {obj.get('kind')}")
        namespace = meta.get("namespace")
        if namespace and namespace not in namespaces:
            PROBLEMS.add(where, f"namespace {namespace} is not created by {rendering.name}")
        for spec, path in pod_specs(obj):
            check_pod_spec(spec, path, namespace, meta, present, where)


def check_pod_spec(spec, path, namespace, meta, present, where):
    containers = [("containers", c) for c in spec.get("containers") or []]
    containers += [("initContainers", c) for c in spec.get("initContainers") or []]
    volumes = [v.get("name") for v in spec.get("volumes") or []]
    if len(volumes) != len(set(volumes)):
        PROBLEMS.add(where, f"{path}.volumes: duplicate names")
    names = [c.get("name") for _, c in containers]
    if len(names) != len(set(names)):
        PROBLEMS.add(where, f"{path}: duplicate container names")
    for field, container in containers:
        cpath = f"{path}.{field}[{container.get('name')}]"
        for mount in container.get("volumeMounts") or []:
            if mount.get("name") not in volumes:
                PROBLEMS.add(where, f"{cpath}: volumeMount {mount.get('name')!r} names no volume")
        env_names = [e.get("name") for e in container.get("env") or []]
        if len(env_names) != len(set(env_names)):
            PROBLEMS.add(where, f"{cpath}: an env variable is set twice")
        security = container.get("securityContext") or {}
        if security.get("privileged") is True and security.get("allowPrivilegeEscalation") is False:
            PROBLEMS.add(where, f"{cpath}: the API server refuses privileged: true with "
                                "allowPrivilegeEscalation: false")
    for volume in spec.get("volumes") or []:
        configmap = volume.get("configMap")
        wanted = ("ConfigMap", namespace, (configmap or {}).get("name"))
        if configmap and not configmap.get("optional") and wanted not in present:
            PROBLEMS.add(where, f"{path}.volumes[{volume.get('name')}]: ConfigMap {configmap.get('name')!r} is not "
                                "rendered alongside; the pod would never start")
        host_path = volume.get("hostPath")
        if host_path:
            check_host_path(host_path, f"{path}.volumes[{volume.get('name')}]", where)
    account = spec.get("serviceAccountName")
    if account and account != "default" and ("ServiceAccount", namespace, account) not in present:
        PROBLEMS.add(where, f"{path}.serviceAccountName: ServiceAccount {account!r} is not rendered alongside")
    for network_namespace, network in attached_networks(meta, namespace, where):
        if (NAD_KIND, network_namespace, network) not in present:
            PROBLEMS.add(where, f"{NETWORKS_ANNOTATION}: NetworkAttachmentDefinition "
                                f"{network_namespace}/{network} is not rendered alongside")


def check_host_path(host_path, path, where):
    """A hostPath that the kubelet or the runtime may create must not go through a snap's `current` link.

    Both resolve symbolic links in the source once, when the container starts, so a mount through
    /var/snap/<snap>/current stays on the old revision after a refresh; and creating the path on a node
    without that snap forges a fake snap tree. Mount /var/snap/<snap> itself instead (see daemonset.yaml).
    """
    source = str(host_path.get("path", ""))
    creates = host_path.get("type") in (None, "", "DirectoryOrCreate", "FileOrCreate")
    if re.match(r"^/var/snap/[^/]+/current(/|$)", source) and creates:
        PROBLEMS.add(where, f"{path}: hostPath {source} with type {host_path.get('type')!r} would be created on "
                            "nodes without the snap and resolved to one snap revision at start; mount the "
                            "snap's /var/snap/<name> directory instead")


def attached_networks(meta, namespace, where):
    """(namespace, name) of every network in the pod's Multus annotation."""
    value = (meta.get("annotations") or {}).get(NETWORKS_ANNOTATION)
    if not value:
        return []
    result = []
    if value.strip().startswith("["):
        try:
            elements = json.loads(value)
        except ValueError as err:
            PROBLEMS.add(where, f"{NETWORKS_ANNOTATION}: not valid JSON: {err}")
            return []
        for element in elements:
            if not isinstance(element, dict) or not element.get("name"):
                PROBLEMS.add(where, f"{NETWORKS_ANNOTATION}: element without a name: {element!r}")
                continue
            result.append((element.get("namespace") or namespace, element["name"]))
        return result
    for element in value.split(","):
        element = element.strip().partition("@")[0]
        network_namespace, _, name = element.rpartition("/")
        result.append((network_namespace or namespace, name))
    return result


# ---------------------------------------------------------------------------------------------------------
# (b) built-in kinds: kubernetes-validate --strict


def validate_builtin(obj, origins, versions):
    kv = KV
    for version in versions:
        try:
            kv.validate(obj, version, strict=True)
        except kv.SchemaNotFoundError as err:
            PROBLEMS.add(origins, f"{describe(obj)}: {err.message}; not a built-in kind and not one this check knows")
            return
        except kv.ValidationError as err:
            location = ".".join(str(part) for part in err.path) or "(top level)"
            PROBLEMS.add(origins, f"{describe(obj)}: kubernetes-validate --strict {err.version}: {location}: "
                                  f"{err.message}")
            return


# ---------------------------------------------------------------------------------------------------------
# (c), (d), (e) NetworkAttachmentDefinitions


def nad_validator(crd_path, version):
    """A validator for NetworkAttachmentDefinitions: the CRD's v1 schema, strict, with ObjectMeta."""
    docs = load_yaml_documents(crd_path)
    if not docs:
        die(f"cannot read the CRD schema {crd_path}")
    crd = docs[0]
    validate_builtin(crd, rel(crd_path), [version])
    spec = crd.get("spec") or {}
    if spec.get("group") != NAD_API_VERSION.split("/")[0] or (spec.get("names") or {}).get("kind") != NAD_KIND:
        die(f"{crd_path} is not the NetworkAttachmentDefinition CRD")
    version_name = NAD_API_VERSION.split("/")[1]
    served = [v for v in spec.get("versions") or [] if v.get("name") == version_name and v.get("served")]
    if not served:
        die(f"{crd_path} serves no {NAD_API_VERSION}")
    schema = strict_schema(copy.deepcopy(served[0]["schema"]["openAPIV3Schema"]))
    # The API server validates a custom resource's metadata as ObjectMeta, whatever the CRD says about it.
    schema["properties"]["metadata"] = {
        "$ref": "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    }
    schema["$id"] = "https://kubernetes.io/api/networkattachmentdefinition-k8s.cni.cncf.io-v1.json"
    schema_dir = f"v{KV.major_minor(version)}.0-local-strict"
    definitions = KV.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", version)
    import referencing

    registry = referencing.Resource.from_contents(definitions) @ referencing.Registry()
    return JSONSCHEMA.validators.Draft202012Validator(schema, registry=registry)


def strict_schema(schema):
    """Refuses fields a structural schema does not declare, as kubectl's strict field validation does."""
    if isinstance(schema, dict):
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            strict_schema(value)
    elif isinstance(schema, list):
        for value in schema:
            strict_schema(value)
    return schema


def validate_nad_object(obj, origins, validator):
    """(c): the object as the API server sees it; returns its spec.config, if any."""
    name = describe(obj)
    if obj.get("apiVersion") != NAD_API_VERSION:
        PROBLEMS.add(origins, f"{name}: apiVersion must be {NAD_API_VERSION}")
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path))):
        location = ".".join(str(part) for part in error.path) or "(top level)"
        PROBLEMS.add(origins, f"{name}: CRD schema: {location}: {error.message}")
    config_text = (obj.get("spec") or {}).get("config")
    if not isinstance(config_text, str) or not config_text.strip():
        PROBLEMS.add(origins, f"{name} is empty; this repository's definitions carry their configuration")
        return None
    return config_text


def validate_nad_config(config_text, origins, roslan, pending_hits, pending_unneeded):
    """(d) and (e): one spec.config, however many objects carry it."""
    name = "spec.config"
    try:
        config = json_object_without_duplicates(config_text)
    except ValueError as err:
        PROBLEMS.add(origins, f"{name} is not valid JSON: {err}")
        return
    if not isinstance(config, dict):
        PROBLEMS.add(origins, f"{name} must be a JSON object")
        return
    if "plugins" in config:
        PROBLEMS.add(origins, f"{name} is a plugin list; this check handles single roslan configurations")
        return
    if config.get("cniVersion") not in ALLOWED_CNI_VERSIONS:
        PROBLEMS.add(origins, f"{name}: cniVersion {config.get('cniVersion')!r}; MicroK8s' Multus 3.9 needs one of "
                              f"{', '.join(ALLOWED_CNI_VERSIONS)}")
    if config.get("type") != "roslan":
        PROBLEMS.add(origins, f"{name}: type {config.get('type')!r}; this repository's definitions use roslan")
        return
    try:
        run = subprocess.run([str(roslan), "validate"], input=config_text.encode(), capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        PROBLEMS.add(origins, f"{name}: cannot run {roslan} validate: {err}")
        return
    output = run.stdout.decode(errors="replace").splitlines() + run.stderr.decode(errors="replace").splitlines()
    if run.returncode != 0:
        PROBLEMS.add(origins, f"{name}: `roslan validate` exited {run.returncode}:\n    " + "\n    ".join(output))
    warned = set()
    for line in output:
        match = UNKNOWN_KEY_WARNING.match(line)
        if not match:
            if line.startswith("warning:"):
                print(f"  note: {origins}: roslan validate: {line}")
            continue
        key = match.group(1)
        warned.add(key)
        if key in PENDING_KEYS:
            pending_hits.add(key)
        else:
            PROBLEMS.add(origins, f"{name}: roslan validate: {line}")
    for key in PENDING_KEYS:
        if key not in warned and has_key(config, key):
            pending_unneeded.add(key)


def has_key(config, dotted):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


# ---------------------------------------------------------------------------------------------------------


def main():
    global BASE, YAML, LOADER, JSONSCHEMA, KV
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=here.parent.parent)
    parser.add_argument("--manifests", type=Path)
    parser.add_argument("--roslan", type=Path)
    args = parser.parse_args()
    repo = args.repo.resolve()
    root = (args.manifests or repo / "manifests").resolve()
    roslan = args.roslan or Path(os.environ.get("ROSLAN_BIN") or repo / "target" / "debug" / "roslan")
    BASE = root.parent

    modules = load_dependencies(repo)
    YAML, JSONSCHEMA, KV = modules["yaml"], modules["jsonschema"], modules["kubernetes_validate.utils"]
    LOADER = strict_loader(YAML)
    if not root.is_dir():
        die(f"{root} is not a directory")
    if not (roslan.is_file() and os.access(roslan, os.X_OK)):
        die(f"{roslan} is not an executable roslan binary: build it (`cargo build --workspace`)")
    versions = [K8S_OLDEST, KV.latest_version()]

    # (a) read, check references, render.
    kusts, referenced = read_kustomizations(root)
    check_every_file_referenced(root, referenced)
    used_components = {(k.dir / str(entry)).resolve() for k in kusts.values() for entry in k.list("components")}
    renderings = []
    for directory, k in sorted(kusts.items()):
        if k.kind == "Kustomization":
            rendering = Rendering(rel(directory))
            rendering.objects = render(kusts, directory)
            renderings.append(rendering)
    addons = sorted(d for d, k in kusts.items() if k.kind == "Component" and d not in used_components)
    if addons and root in kusts:
        for addon in addons:
            rendering = Rendering(f"{rel(root)} + {rel(addon)}")
            rendering.objects = render(kusts, root, extra_components=[addon])
            renderings.append(rendering)
        if len(addons) > 1:
            rendering = Rendering(f"{rel(root)} + every component")
            rendering.objects = render(kusts, root, extra_components=addons)
            renderings.append(rendering)
    for rendering in renderings:
        print(f"rendered {rendering.name}: {', '.join(describe(o) for o, _ in rendering.objects) or 'nothing'}")
        if not rendering.objects:
            PROBLEMS.add(rendering.name, "renders no object")
        cross_check(rendering)

    # The same object often comes out of several renderings: validate each distinct one once.
    distinct = {}
    for rendering in renderings:
        for obj, origin in rendering.objects:
            text = json.dumps(obj, sort_keys=True, default=str)
            distinct.setdefault(text, (obj, set()))[1].add(origin)

    # (b) built-in kinds; (c), (d), (e) NetworkAttachmentDefinitions.
    validator = nad_validator(here / "network-attachment-definition-crd.yaml", versions[-1])
    builtin = nads = 0
    pending_hits, pending_unneeded = set(), set()
    configs = {}
    for obj, origins in distinct.values():
        where = ", ".join(sorted(origins))
        if obj.get("kind") == NAD_KIND:
            nads += 1
            config_text = validate_nad_object(obj, where, validator)
            if config_text is not None:
                configs.setdefault(config_text, set()).update(origins)
        else:
            builtin += 1
            validate_builtin(obj, where, versions)
    for config_text, origins in configs.items():
        validate_nad_config(config_text, ", ".join(sorted(origins)), roslan, pending_hits, pending_unneeded)
    print(f"checked {builtin} distinct built-in objects with kubernetes-validate --strict for Kubernetes "
          f"{', '.join(KV.major_minor(v) for v in versions)}, {nads} NetworkAttachmentDefinitions against the "
          f"Multus CRD schema, and their {len(configs)} distinct configurations (cniVersion, `{roslan} validate`)")
    for key in sorted(pending_hits):
        print(f"  note: roslan does not know {key!r} yet; allowed as pending ({PENDING_KEYS[key]})")
    for key in sorted(pending_unneeded - pending_hits):
        print(f"  note: roslan now accepts {key!r}: remove it from PENDING_KEYS in {rel(Path(__file__).resolve())}")

    if PROBLEMS:
        print(f"\nFAILED: {len(PROBLEMS)} problem(s)")
        for item in PROBLEMS.items:
            print(f"- {item}")
        return 1
    print("manifests OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
