#!/usr/bin/env python3
"""A minimal CRI client (the part of kubelet/crictl the runtime tests need), over gRPC with grpcio.

crictl is packaged neither in Debian 12 nor on PyPI, so this speaks cri-api v1
(`runtime.v1.RuntimeService`) directly, encoding the few protobuf messages by hand: no generated
stubs, no protobuf package. Every command prints one JSON object on stdout.

    cri_client.py SOCKET version
    cri_client.py SOCKET wait SECONDS                       # until the CRI answers Version
    cri_client.py SOCKET run NAME NAMESPACE UID LOGDIR [CGROUP_PARENT]   # -> {"id": ...}
    cri_client.py SOCKET status ID                          # state, ip, netns path, CNI result
    cri_client.py SOCKET stop ID
    cri_client.py SOCKET remove ID
    cri_client.py SOCKET list                               # -> {"ids": [...]}
    cri_client.py SOCKET image REF SECONDS                  # until the CRI knows the image

Field numbers are those of k8s.io/cri-api/pkg/apis/runtime/v1/api.proto.
"""

import json
import sys
import time

import grpc

SERVICE = "/runtime.v1.RuntimeService/"
IMAGES = "/runtime.v1.ImageService/"


# --- protobuf wire format -------------------------------------------------------------------------


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, value):
    """A length-delimited field (string, bytes or embedded message)."""
    if isinstance(value, str):
        value = value.encode()
    return varint(num << 3 | 2) + varint(len(value)) + value


def field_int(num, value):
    return varint(num << 3) + varint(value)


def parse(data):
    """Decodes one message into {field number: [values]} (ints for varints, bytes otherwise)."""
    fields, i = {}, 0

    def read_varint():
        nonlocal i
        shift = result = 0
        while True:
            b = data[i]
            i += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result

    while i < len(data):
        key = read_varint()
        num, wire = key >> 3, key & 7
        if wire == 0:
            value = read_varint()
        elif wire == 2:
            length = read_varint()
            value = data[i : i + length]
            i += length
        elif wire == 1:
            value = data[i : i + 8]
            i += 8
        elif wire == 5:
            value = data[i : i + 4]
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        fields.setdefault(num, []).append(value)
    return fields


def first(fields, num, default=None):
    values = fields.get(num)
    return values[0] if values else default


def text(fields, num):
    return first(fields, num, b"").decode()


# --- calls ----------------------------------------------------------------------------------------


class Cri:
    def __init__(self, socket):
        self.channel = grpc.insecure_channel("unix://" + socket)

    def call(self, method, request, timeout=60):
        stub = self.channel.unary_unary(
            (method if method.startswith("/") else SERVICE + method),
            request_serializer=lambda x: x,
            response_deserializer=lambda x: x,
        )
        return parse(stub(request, timeout=timeout))

    def version(self):
        r = self.call("Version", field(1, "v1"), timeout=5)
        return {
            "version": text(r, 1),
            "runtime_name": text(r, 2),
            "runtime_version": text(r, 3),
            "runtime_api_version": text(r, 4),
        }

    def run(self, name, namespace, uid, logdir, cgroup_parent=""):
        # PodSandboxMetadata{name=1, uid=2, namespace=3, attempt=4}
        meta = field(1, name) + field(2, uid) + field(3, namespace) + field_int(4, 0)
        # PodSandboxConfig{metadata=1, hostname=2, log_directory=3, linux=8}
        config = field(1, meta) + field(2, name) + field(3, logdir)
        if cgroup_parent:
            # LinuxPodSandboxConfig{cgroup_parent=1}
            config += field(8, field(1, cgroup_parent))
        # RunPodSandboxRequest{config=1}
        r = self.call("RunPodSandbox", field(1, config))
        return {"id": text(r, 1)}

    def status(self, sandbox):
        # PodSandboxStatusRequest{pod_sandbox_id=1, verbose=2}
        r = self.call("PodSandboxStatus", field(1, sandbox) + field_int(2, 1))
        # PodSandboxStatusResponse{status=1, info=2 (map<string,string>)}
        status = parse(first(r, 1, b""))
        network = parse(first(status, 5, b""))  # PodSandboxNetworkStatus{ip=1, additional_ips=2}
        meta = parse(first(status, 2, b""))
        info = {}
        for entry in r.get(2, []):
            kv = parse(entry)
            info[text(kv, 1)] = text(kv, 2)
        verbose = json.loads(info.get("info", "{}") or "{}")
        netns = ""
        for ns in verbose.get("runtimeSpec", {}).get("linux", {}).get("namespaces", []):
            if ns.get("type") == "network":
                netns = ns.get("path", "")
        return {
            "id": text(status, 1),
            "name": text(meta, 1),
            "namespace": text(meta, 3),
            "state": {0: "SANDBOX_READY", 1: "SANDBOX_NOTREADY"}.get(first(status, 3, 0), "?"),
            "ip": text(network, 1),
            "additional_ips": [text(parse(a), 1) for a in network.get(2, [])],
            "netns": netns,
            "pid": verbose.get("pid"),
            "cni_result": verbose.get("cniResult"),
        }

    def stop(self, sandbox):
        self.call("StopPodSandbox", field(1, sandbox))
        return {"stopped": sandbox}

    def remove(self, sandbox):
        self.call("RemovePodSandbox", field(1, sandbox))
        return {"removed": sandbox}

    def list(self):
        # ListPodSandboxResponse{items=1 -> PodSandbox{id=1}}
        r = self.call("ListPodSandbox", b"")
        return {"ids": [text(parse(item), 1) for item in r.get(1, [])]}

    def image(self, ref, seconds):
        deadline = time.monotonic() + float(seconds)
        while True:
            # ImageStatusRequest{image=1 -> ImageSpec{image=1}}; ImageStatusResponse{image=1 -> Image{id=1}}
            r = self.call(IMAGES + "ImageStatus", field(1, field(1, ref)), timeout=5)
            image = first(r, 1)
            if image is not None:
                return {"image": ref, "id": text(parse(image), 1)}
            if time.monotonic() > deadline:
                raise SystemExit(f"the CRI does not know {ref} after {seconds} s")
            time.sleep(0.1)

    def wait(self, seconds):
        deadline = time.monotonic() + float(seconds)
        while True:
            try:
                return self.version()
            except grpc.RpcError as err:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the CRI did not answer within {seconds} s: {err}")
                time.sleep(0.1)


COMMANDS = ("version", "wait", "image", "run", "status", "stop", "remove", "list")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    cri = Cri(sys.argv[1])
    command, args = sys.argv[2], sys.argv[3:]
    if command not in COMMANDS:
        sys.exit(__doc__)
    try:
        out = getattr(cri, command)(*args)
    except grpc.RpcError as err:
        print(json.dumps({"error": err.details(), "code": str(err.code())}))
        sys.exit(1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
