"""Run the real program under Pulumi mocks that behave like the engine and providers.

The one offline evaluation of the program: `make render` (tools/render.py), the benchmark
(bench/bench.py) and the tests (tests/) all evaluate stacks through this module.

- Providers' answers are real: private keys, CSRs and certificates are made with `cryptography`
  from the program's inputs; passwords honour length/special; Kubernetes objects get autonamed
  metadata and LoadBalancer addresses; numbers come back as floats, as the engine sends them.
- Secrets are marked as the engine marks them: every output named in the request's
  `additionalSecretOutputs`, and every output whose input carried a secret. (The SDK's
  MockMonitor applies neither, which would hide leaks.)
- `state` plays the provider's stored state: the same inputs give the same outputs across runs,
  so determinism can be checked. Everything registered is recorded for assertions.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import ipaddress
import json
import random
import runpy
import secrets
import string
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import pulumi  # noqa: E402
from pulumi.runtime import mocks as pulumi_mocks  # noqa: E402
from pulumi.runtime import rpc  # noqa: E402
from pulumi.runtime import settings as pulumi_settings  # noqa: E402
from pulumi.runtime.stack import run_pulumi_func  # noqa: E402
from pulumi.runtime.sync_await import _sync_await  # noqa: E402

from tools import pulumi_yaml  # noqa: E402

PROJECT = "mlflow-platform"
MAIN = ROOT / "__main__.py"
PR_PROFILE = ROOT / "profiles" / "pr.yaml"
LOAD_BALANCER_NET = ipaddress.ip_network("203.0.113.0/24")  # TEST-NET-3: never a real address


# --------------------------------------------------------------------------- secrets on the wire
def is_secret(value: Any) -> bool:
    return rpc.is_rpc_secret(value)


def unwrap(value: Any, path: str = "", found: set | None = None) -> Any:
    """Plain value of a deserialized property; collects the paths that were secret."""
    if is_secret(value):
        if found is not None:
            found.add(path)
        return unwrap(rpc.unwrap_rpc_secret(value), path, found)
    if isinstance(value, dict):
        return {k: unwrap(v, f"{path}.{k}" if path else k, found) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value


def whole_numbers(value: Any) -> Any:
    """The engine sends numbers as floats; manifests want ints where they are whole."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    return value


# --------------------------------------------------------------------------- provider behaviour
# Generated values come from the OS, or, when the state holds a "seed" (a render for review), from a
# generator seeded by that seed and the resource (type, name, inputs): the same stack then renders
# byte for byte the same keys, certificates, passwords and names on every run and machine.
_GENERATOR = threading.local()
# Certificates of a seeded render are valid from this instant (a fixed "now").
SEEDED_NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % d for d in range(3, int(p**0.5) + 1, 2))]


def _seeded() -> random.Random | None:
    """The seeded generator of the value being made, or None (OS randomness)."""
    return getattr(_GENERATOR, "rng", None)


def _probably_prime(n: int, rng: random.Random, rounds: int = 40) -> bool:
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return n in _SMALL_PRIMES
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _seeded_rsa(bits: int, rng: random.Random) -> rsa.RSAPrivateKey:
    """An RSA key from `rng` (cryptography only generates from the OS)."""
    e = 65537

    def prime(size: int) -> int:
        while True:
            candidate = rng.getrandbits(size) | (3 << (size - 2)) | 1  # top two bits: n has `bits` bits
            if candidate % e != 1 and _probably_prime(candidate, rng):
                return candidate

    while True:
        p, q = prime(bits // 2), prime(bits - bits // 2)
        if p != q:
            break
    d = pow(e, -1, (p - 1) * (q - 1))
    public = rsa.RSAPublicNumbers(e, p * q)
    return rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), public
    ).private_key()


def _private_key(inputs: dict):
    rng = _seeded()
    if inputs.get("algorithm") == "RSA":
        bits = int(inputs.get("rsaBits", 2048))
        return _seeded_rsa(bits, rng) if rng else rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if rng:
        return ec.derive_private_key(rng.randrange(1, _P256_ORDER), ec.SECP256R1())
    return ec.generate_private_key(ec.SECP256R1())


def _sign_options(key) -> dict:
    """Seeded: ECDSA signatures by RFC 6979 (deterministic) instead of a random nonce."""
    return {"ecdsa_deterministic": True} if _seeded() and isinstance(key, ec.EllipticCurvePrivateKey) else {}


def _token_hex(size: int) -> str:
    rng = _seeded()
    return rng.getrandbits(size * 8).to_bytes(size, "big").hex() if rng else secrets.token_hex(size)


def _pem_key(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _load_key(pem: str):
    return serialization.load_pem_private_key(pem.encode(), password=None)


def _name(subject: dict | None) -> x509.Name:
    subject = subject or {}
    attributes = []
    if subject.get("organization"):
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject["organization"]))
    if subject.get("commonName"):
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, subject["commonName"]))
    return x509.Name(attributes)


def _sans(inputs: dict) -> list[x509.GeneralName]:
    return [x509.DNSName(n) for n in inputs.get("dnsNames") or []] + [
        x509.IPAddress(ipaddress.ip_address(a)) for a in inputs.get("ipAddresses") or []
    ]


_USAGES = {
    "digital_signature": "digital_signature",
    "key_encipherment": "key_encipherment",
    "cert_signing": "key_cert_sign",
    "crl_signing": "crl_sign",
}


def _certificate(
    subject: x509.Name,
    public_key,
    issuer: x509.Name,
    signing_key,
    inputs: dict,
    sans: list[x509.GeneralName],
    is_ca: bool,
) -> str:
    rng = _seeded()
    now = SEEDED_NOW if rng else datetime.datetime.now(datetime.UTC)
    uses = inputs.get("allowedUses") or []
    flags = {
        v: False
        for v in (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        )
    }
    for use in uses:
        if use in _USAGES:
            flags[_USAGES[use]] = True
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(rng.getrandbits(120) + 1 if rng else x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=int(inputs["validityPeriodHours"])))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(**flags), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    extended = [
        oid
        for use, oid in (
            ("server_auth", ExtendedKeyUsageOID.SERVER_AUTH),
            ("client_auth", ExtendedKeyUsageOID.CLIENT_AUTH),
        )
        if use in uses
    ]
    if extended:  # as pulumi-tls: one ExtendedKeyUsage extension listing each *_auth use
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return (
        builder.sign(signing_key, hashes.SHA256(), **_sign_options(signing_key))
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )


def _password(inputs: dict) -> str:
    length = int(inputs.get("length", 16))
    alphabet = string.ascii_letters + string.digits
    if inputs.get("special", True):
        alphabet += inputs.get("overrideSpecial") or "!@#$%&*()-_=+[]{}<>:?"
    choice = (_seeded() or secrets.SystemRandom()).choice
    return "".join(choice(alphabet) for _ in range(length))


# --------------------------------------------------------------------------- the mocks
class EngineError(grpc.RpcError):
    """An invoke the engine refuses reaches the program as a gRPC error (code UNKNOWN, the message)."""

    def __init__(self, details: str):
        super().__init__(details)
        self._details = details

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNKNOWN

    def details(self) -> str:
        return self._details


class PlatformMocks(pulumi.runtime.Mocks):
    """Provider answers. `state` maps (type, name, inputs) to what the provider generated."""

    def __init__(self, state: dict):
        self.state = state

    def _load_balancer_ip(self, service: str) -> str:
        """A Service keeps its address for life, whatever order resources register in."""
        key = ("LoadBalancer", service)
        if key not in self.state and "seed" in self.state:  # independent of the registration order
            self.state[key] = str(LOAD_BALANCER_NET[10 + int(hashlib.sha256(service.encode()).hexdigest(), 16) % 200])
        if key not in self.state:
            taken = sum(1 for k in self.state if k[0] == "LoadBalancer")
            self.state[key] = str(LOAD_BALANCER_NET[10 + taken])
        return self.state[key]

    def _remember(self, args: pulumi.runtime.MockResourceArgs, make) -> dict:
        key = (args.typ, args.name, json.dumps(args.inputs, sort_keys=True, default=str))
        if key not in self.state:
            seed = self.state.get("seed")
            digest = hashlib.sha256(json.dumps([seed, *key]).encode()).digest()
            _GENERATOR.rng = random.Random(digest) if seed is not None else None
            try:
                self.state[key] = make()
            finally:
                _GENERATOR.rng = None
        return self.state[key]

    # What the cluster stack exports once `make up STACK=cluster` ran (chart 0.29.0, plugin v0.14.0);
    # a test replaces or removes stacks through `state["stacks"]` (full name -> outputs, None: no such stack),
    # and makes reads meet a stack's checkpoint mid-write through `state["checkpoint_mid_write"]` (name -> count).
    CLUSTER_STACK_OUTPUTS = {
        "cnpgOperatorNamespace": "cnpg-system",
        "cnpgOperatorVersion": "1.30.0",
        "barmanPluginVersion": "0.14.0",
        "profile": "cluster",
    }

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "pulumi:pulumi:readStackOutputs":
            # The engine reads a stack's last checkpoint: this stack's is what `evaluate` kept.
            name = args.args["name"]
            this_stack = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
            stacks = {
                f"{pulumi.get_organization()}/{PROJECT}/cluster": self.CLUSTER_STACK_OUTPUTS,
                this_stack: self.state.get("stack_outputs", {}),
                **self.state.get("stacks", {}),
            }
            mid_write = self.state.get("checkpoint_mid_write", {})  # stack -> reads that meet it mid-write
            if mid_write.get(name):
                mid_write[name] -= 1
                # What the file backend answers while an update writes that stack's checkpoint.
                raise EngineError(f"invocation of {args.token} returned an error: failed to load checkpoint: EOF")
            if stacks.get(name) is None:
                raise EngineError(f'unknown stack "{name}"')  # what the file backend answers
            return {"name": name, "outputs": stacks[name], "secretOutputNames": []}
        raise AssertionError(f"the program made an unexpected invoke: {args.token}")

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = dict(args.inputs)
        typ = args.typ
        if typ.startswith("pulumi:providers:"):
            return f"{args.name}-provider-id", inputs
        if typ == "pulumi:pulumi:StackReference":
            # The engine reads the referenced stack's last checkpoint: here, what `evaluate` kept.
            return inputs["name"], {
                "name": inputs["name"],
                "outputs": self.state.get("stack_outputs", {}),
                "secretOutputNames": [],
            }
        if args.resource_id:
            # A `Resource.get` would be state that `refresh` re-reads (drift after every deploy); what the
            # program needs from outside its stack it reads with invokes (the cluster stack's outputs).
            raise AssertionError(f"the program reads a live object: {args.typ} {args.resource_id}")
        handler = getattr(self, "_" + typ.split(":")[0].replace(".", "_"), None)
        outputs = handler(args, inputs) if handler else inputs
        resource_id = outputs.pop("__id", None) or f"{args.name}-id"
        return resource_id, outputs

    def _tls(self, args, inputs: dict) -> dict:
        kind = args.typ.rsplit(":", 1)[1]
        if kind == "PrivateKey":

            def make():
                key = _private_key(inputs)
                public = (
                    key.public_key()
                    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
                    .decode()
                )
                return {"privateKeyPem": _pem_key(key), "privateKeyPemPkcs8": _pem_key(key), "publicKeyPem": public}

            return {**inputs, **self._remember(args, make)}
        if kind == "SelfSignedCert":

            def make():
                key = _load_key(inputs["privateKeyPem"])
                name = _name(inputs.get("subject"))
                return {
                    "certPem": _certificate(
                        name, key.public_key(), name, key, inputs, _sans(inputs), bool(inputs.get("isCaCertificate"))
                    )
                }

            return {**inputs, **self._remember(args, make)}
        if kind == "CertRequest":

            def make():
                key = _load_key(inputs["privateKeyPem"])
                builder = x509.CertificateSigningRequestBuilder().subject_name(_name(inputs.get("subject")))
                if _sans(inputs):
                    builder = builder.add_extension(x509.SubjectAlternativeName(_sans(inputs)), critical=False)
                return {
                    "certRequestPem": builder.sign(key, hashes.SHA256(), **_sign_options(key))
                    .public_bytes(serialization.Encoding.PEM)
                    .decode()
                }

            return {**inputs, **self._remember(args, make)}
        if kind == "LocallySignedCert":

            def make():
                csr = x509.load_pem_x509_csr(inputs["certRequestPem"].encode())
                ca = x509.load_pem_x509_certificate(inputs["caCertPem"].encode())
                try:
                    sans = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
                except x509.ExtensionNotFound:
                    sans = []
                return {
                    "certPem": _certificate(
                        csr.subject,
                        csr.public_key(),
                        ca.subject,
                        _load_key(inputs["caPrivateKeyPem"]),
                        inputs,
                        sans,
                        bool(inputs.get("isCaCertificate")),
                    )
                }

            return {**inputs, **self._remember(args, make)}
        raise AssertionError(f"unmocked tls resource {args.typ}")

    def _random(self, args, inputs: dict) -> dict:
        if args.typ != "random:index/randomPassword:RandomPassword":
            raise AssertionError(f"unmocked random resource {args.typ}")
        generated = self._remember(args, lambda: {"result": _password(inputs)})
        return {
            **inputs,
            **generated,
            "bcryptHash": "$2a$10$" + hashlib.sha256(generated["result"].encode()).hexdigest()[:53],
        }

    def _kubernetes(self, args, inputs: dict) -> dict:
        if args.typ == "kubernetes:helm.sh/v3:Release":
            return {
                **inputs,
                "status": {
                    "status": "deployed",
                    "name": inputs.get("name"),
                    "namespace": inputs.get("namespace"),
                    "chart": inputs.get("chart"),
                    "version": inputs.get("version"),
                    "appVersion": "1.30.0",
                },
            }
        outputs = json.loads(json.dumps(inputs))
        metadata = outputs.setdefault("metadata", {})
        if not metadata.get("name"):
            suffix = self._remember(args, lambda: {"suffix": _token_hex(4)})["suffix"]
            metadata["name"] = f"{args.name}-{suffix}"
        metadata.setdefault("uid", str(hashlib.md5(f"{args.typ}/{args.name}".encode()).hexdigest()))
        if outputs.get("kind") == "Secret" and "stringData" in outputs:
            outputs["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in outputs["stringData"].items()}
        if outputs.get("kind") == "Service":
            spec = outputs.setdefault("spec", {})
            if spec.get("clusterIP") != "None":
                spec["clusterIP"] = "10.43.0." + str(10 + int(hashlib.md5(args.name.encode()).hexdigest(), 16) % 200)
            if spec.get("type") == "LoadBalancer":
                outputs["status"] = {"loadBalancer": {"ingress": [{"ip": self._load_balancer_ip(args.name)}]}}
        namespace = metadata.get("namespace")
        outputs["__id"] = f"{namespace}/{metadata['name']}" if namespace else metadata["name"]
        return outputs

    def _minio(self, args, inputs: dict) -> dict:
        outputs = dict(inputs)
        if args.typ.endswith(":S3Bucket"):
            outputs.update(
                arn=f"arn:aws:s3:::{inputs['bucket']}", bucketDomainName=inputs["bucket"], __id=inputs["bucket"]
            )
        elif args.typ.endswith(":IamUser") or args.typ.endswith(":IamPolicy"):
            outputs["__id"] = inputs["name"]
        return outputs

    def _postgresql(self, args, inputs: dict) -> dict:
        return {**inputs, "__id": inputs.get("name", args.name)}


# --------------------------------------------------------------------------- the recording monitor
@dataclass
class Registration:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    inputs: dict
    outputs: dict
    secret_inputs: set
    secret_outputs: set
    dependencies: list
    property_dependencies: dict
    provider: str
    protect: bool
    retain_on_delete: bool
    delete_before_replace: bool
    additional_secret_outputs: list
    aliases: list = field(default_factory=list)

    def output(self, path: str) -> Any:
        value: Any = self.outputs
        for part in path.split("."):
            value = value[part]
        return value


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """MockMonitor that records every request and marks secrets as the engine does."""

    def __init__(self, mocks: PlatformMocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self.component_outputs: dict[str, tuple[dict, set]] = {}

    def RegisterResource(self, request):
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            return pulumi_mocks.resource_pb2.RegisterResourceResponse(urn=urn)
        pulumi_mocks._ensure_event_loop()
        raw = rpc.deserialize_properties(request.object)
        secret_paths: set = set()
        inputs = unwrap(raw, found=secret_paths)
        secret_top = {path.split(".")[0].split("[")[0] for path in secret_paths}
        args = pulumi.runtime.MockResourceArgs(
            typ=request.type,
            name=request.name,
            inputs=inputs,
            provider=request.provider,
            resource_id=request.importId,
            custom=request.custom,
        )
        resource_id, outputs = self.mocks.new_resource(args) if request.custom else ("", inputs)
        resource_id = resource_id or ""  # PlatformMocks always gives custom resources an id
        outputs = json.loads(json.dumps(outputs))  # the wire turns ints into floats
        outputs = {k: (float(v) if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in outputs.items()}
        secret_outputs = {k for k in outputs if k in set(request.additionalSecretOutputs) or k in secret_top}
        wire = {k: (rpc.wrap_rpc_secret(v) if k in secret_outputs else v) for k, v in outputs.items()}
        self.registrations.append(
            Registration(
                urn=urn,
                type=request.type,
                name=request.name,
                custom=request.custom,
                parent=request.parent,
                inputs=whole_numbers(inputs),
                outputs=whole_numbers(outputs),
                secret_inputs=secret_paths,
                secret_outputs=secret_outputs,
                dependencies=list(request.dependencies),
                property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
                provider=request.provider,
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                delete_before_replace=bool(request.deleteBeforeReplace),
                additional_secret_outputs=list(request.additionalSecretOutputs),
                aliases=[str(a) for a in request.aliases],
            )
        )
        self.resources[urn] = pulumi_mocks.MockMonitor.ResourceRegistration(urn, resource_id, outputs)
        obj = _sync_await(rpc.serialize_properties(wire, {}))
        return pulumi_mocks.resource_pb2.RegisterResourceResponse(urn=urn, id=resource_id, object=obj)

    def RegisterResourceOutputs(self, request):
        found: set = set()
        outputs = unwrap(rpc.deserialize_properties(request.outputs), found=found)
        self.component_outputs[request.urn] = (outputs, found)
        return super().RegisterResourceOutputs(request)


# --------------------------------------------------------------------------- running the program
@dataclass(frozen=True)
class Secret:
    """A config value set with `pulumi config set --secret`: `stack_config(..., {"key": Secret("v")})`."""

    value: Any


def secret_config_keys(overrides: dict | None = None) -> list[str]:
    """Full keys of the overrides given as Secret, as the CLI lists them to the program."""
    return sorted(f"{PROJECT}:{k}" for k, v in (overrides or {}).items() if isinstance(v, Secret))


def set_stack_config(stack: str, overrides: dict | None = None) -> None:
    """Hand the program its config and which keys are secret, as `pulumi up` does (resets both)."""
    pulumi.runtime.set_all_config(stack_config(stack, overrides), secret_config_keys(overrides))


def stack_config(stack: str, overrides: dict | None = None) -> dict[str, str]:
    """Config as the CLI hands it to the program: Pulumi.yaml's declared defaults (the real engine
    passes every declared key), then Pulumi.<stack>.yaml (or the PR profile), then overrides."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    if not path.exists() and stack.startswith("pr-"):
        path = PR_PROFILE
    # Both files read as the CLI reads them (YAML 1.2 by yaml.v3's rules: `on` stays a string).
    project = pulumi_yaml.load(ROOT / "Pulumi.yaml")
    values: dict = {key: pulumi_yaml.config_text(spec["default"]) for key, spec in project["config"].items()}
    if path.exists():
        document = pulumi_yaml.load(path) or {}
        values.update(
            {
                k.split(":", 1)[1]: pulumi_yaml.config_text(v)
                for k, v in (document.get("config") or {}).items()
                if k.startswith(PROJECT + ":")
            }
        )
    values.update(overrides or {})
    # A key with a namespace (e.g. kubernetes:context) is another package's: passed as it is.
    return {(k if ":" in k else f"{PROJECT}:{k}"): _config_text(v) for k, v in values.items()}


def _config_text(value: Any) -> str:
    if isinstance(value, Secret):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


@dataclass
class Evaluation:
    stack: str
    registrations: list[Registration]
    outputs: dict
    secret_outputs: set
    component_outputs: dict
    state: dict

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def one(self, typ: str, name: str) -> Registration:
        found = [r for r in self.registrations if r.type == typ and r.name == name]
        assert len(found) == 1, f"expected one {typ} named {name}, found {len(found)}"
        return found[0]

    @property
    def k8s_objects(self) -> list[dict]:
        """Every Kubernetes object as it would be applied (no status, whole numbers as ints)."""
        objects = []
        for reg in self.registrations:
            if not reg.custom or not reg.type.startswith("kubernetes:") or reg.type == "kubernetes:helm.sh/v3:Release":
                continue
            obj = {
                k: v
                for k, v in reg.outputs.items()
                if k not in ("status", "data") or (k == "data" and "stringData" not in reg.outputs)
            }
            obj["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "uid"}
            objects.append(obj)
        return objects

    def k8s(self, kind: str) -> list[dict]:
        return [o for o in self.k8s_objects if o["kind"] == kind]

    def secret_by_name(self, name: str) -> dict[str, str]:
        matches = [o for o in self.k8s("Secret") if o["metadata"]["name"] == name]
        assert len(matches) == 1, f"no single Secret named {name}"
        return matches[0].get("stringData") or {k: base64.b64decode(v).decode() for k, v in matches[0]["data"].items()}

    def secret_values(self, minimum_length: int = 8) -> set[str]:
        """Every string the engine holds as secret (generated passwords, keys, URIs...).

        Kubernetes Secrets are skipped as sources: they hold public material too (CA, usernames)
        and every secret they carry comes from a generating resource that is scanned.
        """
        found: set[str] = set()
        for reg in self.registrations:
            if reg.type == "kubernetes:core/v1:Secret":
                continue
            for key in reg.secret_outputs:
                found.update(_strings(reg.outputs[key]))
        return {s for s in found if len(s) >= minimum_length}

    def without_secret_paths(self, reg: Registration, which: str) -> Iterator[tuple[str, str]]:
        """(path, string) of every plain (non-secret) string in a registration's inputs or outputs."""
        data = reg.inputs if which == "inputs" else reg.outputs
        secret = reg.secret_inputs if which == "inputs" else reg.secret_outputs
        yield from _plain_strings(data, "", secret)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _plain_strings(value: Any, path: str, secret: set) -> Iterator[tuple[str, str]]:
    if path in secret:
        return
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _plain_strings(v, f"{path}.{k}" if path else k, secret)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _plain_strings(v, f"{path}[{i}]", secret)


def evaluate_stack(
    stack: str = "dev",
    config: dict | None = None,
    state: dict | None = None,
    preview: bool = False,
    program: Path | None = None,
) -> Evaluation:
    """Evaluate __main__.py (or another `program` file) fresh for `stack`, as `pulumi up` would, and
    return what it registered.

    Raises what the program raises (e.g. settings.ConfigError) after the runtime has settled.
    """
    path = str(program or MAIN)
    return evaluate(lambda: runpy.run_path(path, run_name="__main__"), stack, config, state, preview)


def _cancel_leftovers() -> None:
    """A failed run leaves tasks (applies, registrations) behind; the engine would exit here.
    Cancel and forget them, or they would run, and fail, inside the next evaluation."""
    loop = asyncio.get_event_loop()
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    # The SDK keeps the failed run's RPCs and output tasks in process-wide settings; the next run
    # would await them (and re-raise this failure).
    pulumi_settings._get_rpc_manager().clear()
    outputs = getattr(pulumi_settings.SETTINGS, "outputs", None)
    if outputs is not None:
        outputs.clear()


def evaluate(
    program: Callable[[], Any],
    stack: str = "dev",
    config: dict | None = None,
    state: dict | None = None,
    preview: bool = False,
) -> Evaluation:
    """Run any program (e.g. one component alone) under the same mocks and monitor."""
    state = {} if state is None else state
    mocks = PlatformMocks(state)
    monitor = RecordingMonitor(mocks)
    set_stack_config(stack, config)
    pulumi_settings.ROOT.set(None)
    # The file backend's organization is "organization": stack references read organization/<project>/<stack>.
    pulumi.runtime.set_mocks(
        mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor, organization="organization"
    )
    root = pulumi_settings.get_root_resource()
    try:
        _sync_await(run_pulumi_func(program))
    except Exception as error:
        error.registrations = monitor.registrations  # type: ignore[attr-defined]  # what got registered before the failure
        _cancel_leftovers()
        raise
    outputs, secret_outputs = {}, set()
    for name, value in root.outputs.items():  # type: ignore[union-attr]  # the Stack resource
        output = pulumi.Output.from_input(value)
        outputs[name] = _sync_await(output.future())
        if _sync_await(output.is_secret()):
            secret_outputs.add(name)
    # Like a checkpoint: the next evaluation with this state sees these as the last deployment's outputs.
    state["stack_outputs"] = outputs
    return Evaluation(
        stack=stack,
        registrations=monitor.registrations,
        outputs=whole_numbers(outputs),
        secret_outputs=secret_outputs,
        component_outputs=monitor.component_outputs,
        state=state,
    )
