"""Real DICOM peers for integration tests: Orthanc on loopback with its own config and storage."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spinemets.ports import free_port


@dataclass
class Orthanc:
    """An Orthanc server started from the Debian package, with a private config and storage."""

    root: Path
    aet: str = "ORTHANC"
    dicom_port: int = 0
    http_port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        binary = shutil.which("Orthanc")
        if binary is None:
            raise FileNotFoundError("Orthanc is not installed (Debian package 'orthanc')")
        self.dicom_port = self.dicom_port or free_port()
        self.http_port = self.http_port or free_port()
        config = {
            "Name": "spinemets-test", "StorageDirectory": str(self.root / "storage"),
            "IndexDirectory": str(self.root / "index"), "HttpPort": self.http_port,
            "DicomPort": self.dicom_port, "DicomAet": self.aet, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": True, "Plugins": [],
        }
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "orthanc.json"
        path.write_text(json.dumps(config))
        log = open(self.root / "orthanc.log", "wb")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen([binary, str(path)], stdout=log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.get("/system")
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"Orthanc did not start; see {self.root / 'orthanc.log'}")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as r:
            body = r.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body

    def post(self, path: str, payload: Any) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.loads(r.read())

    def put(self, path: str, payload: Any) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"}, method="PUT")
        with urllib.request.urlopen(request, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body

    def add_modality(self, name: str, aet: str, port: int, host: str = "127.0.0.1") -> None:
        """Declare (or update) a DICOM node that may query and retrieve, and that C-MOVEs can
        be sent to."""
        self.put(f"/modalities/{name}", {"AET": aet, "Host": host, "Port": port,
                                         "AllowEcho": True, "AllowFind": True,
                                         "AllowMove": True, "AllowGet": True,
                                         "AllowStore": True})

    def upload(self, files: list[Path]) -> None:
        """Store DICOM files through the REST API (as if the PACS had them all along)."""
        for path in files:
            request = urllib.request.Request(
                f"http://127.0.0.1:{self.http_port}/instances", data=path.read_bytes(),
                headers={"Content-Type": "application/dicom"}, method="POST")
            with urllib.request.urlopen(request, timeout=30) as r:
                r.read()

    def instances_of_study(self, study_uid: str) -> list[dict[str, Any]]:
        """Instances of a study with their tags (Modality, SOP Instance UID...)."""
        ids = self.post("/tools/find", {"Level": "Instance",
                                         "Query": {"StudyInstanceUID": study_uid}})
        return [self.get(f"/instances/{i}/simplified-tags") | {"ID": i} for i in ids]

    def download(self, instance_id: str, path: Path) -> Path:
        path.write_bytes(self.get(f"/instances/{instance_id}/file"))
        return path

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None
