#!/usr/bin/env python3
"""Assembles an OCI image archive from layer tarballs, without a registry or
Docker: writes the image config, the manifest and index.json (OCI image layout)
and, for older importers, a Docker-style manifest.json.

  oci-image.py --name faas-python-runner:latest --out img.tar \
      --layer base.tar --layer app.tar --entrypoint '["python3","-m","faas_runner"]' \
      --env FAAS_PORT=8080 --user 10001:10001 --workdir /app [--existing sha256:...]

Layers are uncompressed tars, so a layer's digest is also its diff ID. Prints
the manifest digest; with --existing equal to it, writes nothing ("unchanged").
"""
import argparse
import hashlib
import io
import json
import os
import sys
import tarfile

LAYER = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def file_digest(path):
    """sha256 of a layer, remembered beside it while the layer is unchanged."""
    side = path + ".sha256"
    st = os.stat(path)
    stamp = f"{st.st_size}:{st.st_mtime_ns}"
    if os.path.exists(side):
        cached_stamp, _, digest = open(side).read().strip().partition(" ")
        if cached_stamp == stamp:
            return digest, st.st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = "sha256:" + h.hexdigest()
    try:
        with open(side, "w") as f:
            f.write(f"{stamp} {digest}\n")
    except OSError:
        pass
    return digest, st.st_size


def full_name(name):
    """The name containerd stores: docker.io/library/x:tag for a bare x:tag."""
    first = name.split("/", 1)[0]
    if "/" not in name:
        return "docker.io/library/" + name
    if "." not in first and ":" not in first and first != "localhost":
        return "docker.io/" + name
    return name


def blob(data):
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def add_bytes(tar, path, data):
    info = tarfile.TarInfo(path)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--layer", action="append", default=[])
    p.add_argument("--entrypoint", default="null")
    p.add_argument("--cmd", default="null")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--user", default="")
    p.add_argument("--workdir", default="/")
    p.add_argument("--expose", action="append", default=[])
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--existing", default="")
    a = p.parse_args()

    layers = [(path, *file_digest(path)) for path in a.layer]
    env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *a.env]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": env,
            "Entrypoint": json.loads(a.entrypoint),
            "Cmd": json.loads(a.cmd),
            "WorkingDir": a.workdir,
            "User": a.user,
            "ExposedPorts": {f"{port}/tcp": {} for port in a.expose},
            "Labels": dict(label.split("=", 1) for label in a.label),
        },
        "rootfs": {"type": "layers", "diff_ids": [d for _, d, _ in layers]},
        "history": [{"created_by": f"hack/cluster/build-images.sh: {os.path.basename(l)}"} for l, _, _ in layers],
    }
    config_digest, config_bytes = blob(json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": LAYER, "digest": d, "size": s} for _, d, s in layers],
    }
    manifest_digest, manifest_bytes = blob(json.dumps(manifest, sort_keys=True).encode())
    if a.existing == manifest_digest:
        print("unchanged")
        return 0

    name = full_name(a.name)
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MANIFEST, "digest": manifest_digest, "size": len(manifest_bytes),
            "annotations": {"io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]},
        }],
    }
    docker_manifest = [{
        "Config": "blobs/sha256/" + config_digest[7:],
        "RepoTags": [a.name],
        "Layers": ["blobs/sha256/" + d[7:] for _, d, _ in layers],
    }]
    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        add_bytes(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add_bytes(tar, "index.json", json.dumps(index).encode())
        add_bytes(tar, "manifest.json", json.dumps(docker_manifest).encode())
        add_bytes(tar, "blobs/sha256/" + config_digest[7:], config_bytes)
        add_bytes(tar, "blobs/sha256/" + manifest_digest[7:], manifest_bytes)
        seen = set()
        for path, digest, _ in layers:
            if digest not in seen:
                seen.add(digest)
                tar.add(path, arcname="blobs/sha256/" + digest[7:])
    os.replace(tmp, a.out)
    print(manifest_digest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
