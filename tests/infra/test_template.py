"""The SAM template: valid (cfn-lint with the SAM transform), least privilege, safe defaults, and consistent
with the code it deploys."""

import fnmatch
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cfn import as_list, conditions, resolve
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


@pytest.fixture(scope="module")
def template() -> dict:
    data, problems = decode(str(TEMPLATE))
    assert not problems, problems
    return data


def resources(template, kind):
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def alternatives(statements) -> list[dict]:
    """Policy statements with each Fn::If replaced by both of its branches: either may be deployed."""
    out = []
    for statement in as_list(statements):
        if set(statement) == {"Fn::If"}:
            out += alternatives([b for b in statement["Fn::If"][1:] if b != {"Ref": "AWS::NoValue"}])
        else:
            out.append(statement)
    return out


def statements(function) -> list[dict]:
    out = []
    for policy in function["Properties"].get("Policies", []):
        out.extend(alternatives(policy.get("Statement", [])) if isinstance(policy, dict) else [])
    return out


def flat(value) -> str:
    """An intrinsic (!Sub/!If …) flattened to its text, for pattern checks."""
    return str(value)


def cfn_lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), str(path)], capture_output=True, text=True, cwd=ROOT
    )


def test_cfn_lint_passes_with_the_sam_transform():
    result = cfn_lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_really_checks_sam_resources(tmp_path):
    """Guards against a linter that passes anything: a property SAM does not know must fail."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        TEMPLATE.read_text().replace(
            "Handler: batch.dispatch_handler", "Handler: batch.dispatch_handler\n      Colour: red", 1
        )
    )
    result = cfn_lint(broken)
    assert result.returncode != 0 and "'Colour' was unexpected" in result.stdout, result.stdout


def sam_transform(template, parameters: dict) -> dict:
    """The CloudFormation that `sam deploy` would create (the SAM translator, with stand-in artifact URIs)."""
    import copy
    import json

    from samtranslator.translator.transform import transform

    document = copy.deepcopy(json.loads(json.dumps(template, default=str)))
    for resource in document["Resources"].values():
        props = resource.get("Properties", {})
        if props.get("PackageType") == "Image":
            props["ImageUri"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/newsgen:python3.12-v1"
        for key in ("CodeUri", "ContentUri"):
            if key in props:
                props[key] = "s3://artifacts/newsgen.zip"

    class NoManagedPolicies:
        def load(self):
            return {}

    return transform(document, parameters, NoManagedPolicies())


PSEUDO_PARAMETERS = {
    "AWS::Region",
    "AWS::AccountId",
    "AWS::Partition",
    "AWS::StackName",
    "AWS::URLSuffix",
    "AWS::NoValue",
    "AWS::StackId",
}


PROXY, ANY_METHOD = "/{proxy+}", "x-amazon-apigateway-any-method"


def deployed(transformed: dict, parameters: dict) -> dict:
    """What CloudFormation keeps of a transformed template for these parameters: conditions evaluated,
    resources and outputs whose condition is false dropped, every Fn::If replaced by its chosen branch, and
    AWS::NoValue left out."""
    values = {name: str(p.get("Default", "")) for name, p in transformed.get("Parameters", {}).items()}
    values.update(parameters)
    holds = conditions(transformed, values)

    kept = {}
    for section in ("Resources", "Outputs"):
        kept[section] = {
            name: resolve(body, values, holds, only_conditions=True)
            for name, body in transformed.get(section, {}).items()
            if "Condition" not in body or holds[body["Condition"]]
        }
    kept["Parameters"] = values
    return kept


def references(value) -> set[str]:
    """Every logical name a value points at (Ref, Fn::GetAtt, ${Name} and ${Name.Attr} in Fn::Sub)."""
    found = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref":
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            elif key == "Fn::Sub":
                text, local = (inner, {}) if isinstance(inner, str) else inner
                found |= {n.split(".")[0] for n in re.findall(r"\$\{([^}!]+)\}", text)} - set(local)
                found |= references(local)
            else:
                found |= references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= references(inner)
    return found


@pytest.fixture(scope="module")
def transformed(template, monkeypatch_module) -> dict:
    monkeypatch_module.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return sam_transform(template, {})


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.mark.parametrize(
    "mode, security, usage_plan",
    [
        ("API_KEY", [{"api_key": []}], True),
        ("IAM", [{"sigv4": []}], False),
        ("NONE", [], False),
    ],
)
def test_api_auth_mode_switches_every_route(transformed, mode, security, usage_plan):
    from handlers.api import PUBLIC_PATHS

    stack = deployed(transformed, {"ApiAuthMode": mode})
    out = stack["Resources"]
    body = out["NewsApi"]["Properties"]["Body"]
    operations = {(method, path): op for path, methods in body["paths"].items() for method, op in methods.items()}
    # One proxy route: every path and method reaches the function, whose router is the route table; beside
    # it, the playground's page, files and spec, open in every mode (a browser's navigation sends no key).
    assert set(operations) == {(ANY_METHOD, PROXY)} | {(ANY_METHOD, path) for path in PUBLIC_PATHS}
    permissions = [
        r["Properties"]
        for r in out.values()
        if r["Type"] == "AWS::Lambda::Permission" and r["Properties"]["Principal"] == "apigateway.amazonaws.com"
    ]
    assert permissions and all(p["FunctionName"] == {"Ref": "ApiFunctionAliaslive"} for p in permissions)
    for route, operation in operations.items():
        assert operation["security"] == (security if route[1] == PROXY else []), route
        assert all(name in body["securityDefinitions"] for entry in security for name in entry)
        integration = operation["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy" and references(integration["uri"]) == {
            "AWS::Partition",
            "AWS::Region",
            "ApiFunctionAliaslive",
        }
    # API Gateway may invoke the function for every route, the root included (a proxy path does not match it).
    for path in (*PUBLIC_PATHS, "/v1/headlines", "/v1/models"):
        for method in ("GET", "POST"):
            assert any(invokes(p["SourceArn"], method, path) for p in permissions), (method, path)
    plans = [r for r in out.values() if r["Type"] == "AWS::ApiGateway::UsagePlan"]
    assert bool(plans) == usage_plan and ("ApiKeyCommand" in stack["Outputs"]) == usage_plan
    if usage_plan:
        assert plans[0]["Properties"]["Quota"]["Period"] == "DAY" and plans[0]["Properties"]["Throttle"]
    # Nothing left pointing at a resource this mode dropped (the failure of conditional Api resources).
    known = set(out) | set(stack["Parameters"]) | PSEUDO_PARAMETERS
    for name, body in {**out, **stack["Outputs"]}.items():
        assert references(body) <= known, (name, references(body) - known)


def invokes(source_arn: dict, method: str, path: str) -> bool:
    """Whether a Lambda permission's SourceArn (SAM's Fn::Sub) covers an API Gateway request: IAM's `*`
    matches any run of characters, `/` included, as fnmatch's does."""
    text, names = source_arn["Fn::Sub"]
    assert set(names) == {"__ApiId__", "__Stage__"}, names
    pattern = text.replace("${__ApiId__}", "api123").replace("${__Stage__}", names["__Stage__"])
    pattern = pattern.replace("${AWS::Region}", "us-east-1").replace("${AWS::AccountId}", "123456789012")
    return fnmatch.fnmatchcase(f"arn:aws:execute-api:us-east-1:123456789012:api123/prod/{method}{path}", pattern)


def test_the_permission_check_tells_routes_apart():
    root_only = {
        "Fn::Sub": [
            "arn:aws:execute-api:${AWS::Region}:${AWS::AccountId}:${__ApiId__}/${__Stage__}/*/",
            {"__ApiId__": {"Ref": "NewsApi"}, "__Stage__": "*"},
        ]
    }
    assert invokes(root_only, "GET", "/") and not invokes(root_only, "GET", "/v1/models")


@pytest.mark.parametrize("value, reserved", [("", False), ("0", False), ("5", True)])
def test_reserved_concurrency_is_optional(transformed, value, reserved):
    """Lambda's 0 would throttle every request, so 0 (like empty) means unreserved: the property is left out."""
    out = deployed(transformed, {"ReservedConcurrency": value})["Resources"]
    functions = {name: r["Properties"] for name, r in out.items() if r["Type"] == "AWS::Lambda::Function"}
    assert ("ReservedConcurrentExecutions" in functions["ApiFunction"]) is reserved
    if reserved:
        assert functions["ApiFunction"]["ReservedConcurrentExecutions"] == {"Ref": "ReservedConcurrency"}
    assert not any(
        "ReservedConcurrentExecutions" in props for name, props in functions.items() if name != "ApiFunction"
    )


def test_reserved_concurrency_accepts_only_counts(template):
    pattern = re.compile(template["Parameters"]["ReservedConcurrency"]["AllowedPattern"])
    assert all(pattern.match(v) for v in ("", "0", "1", "250"))
    assert not any(pattern.match(v) for v in ("-1", "007", "ten", "1.5"))


def function_statements(stack: dict, function: str) -> list[dict]:
    """Every IAM statement a deployed function's role carries: the role's own policies and any AWS::IAM::Policy
    attached to it."""
    resources = stack["Resources"]
    role = resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]
    found = [s for p in resources[role]["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    for body in resources.values():
        if body["Type"] == "AWS::IAM::Policy" and {"Ref": role} in body["Properties"]["Roles"]:
            found += body["Properties"]["PolicyDocument"]["Statement"]
    return found


@pytest.mark.parametrize(
    "bucket_name, bucket", [("", {"Ref": "ModelBucket"}), ("existing-models", {"Ref": "ModelBucketName"})]
)
def test_model_readers_list_only_the_model_prefix(transformed, bucket_name, bucket):
    """A GET of a missing artifact is a 404 (not a 403) for the functions that read models: they may list the
    bucket, under the model prefix only."""
    stack = deployed(transformed, {"ModelBucketName": bucket_name})
    for function, lists_models in (
        ("ApiFunction", True),
        ("BatchWorkerFunction", True),
        ("BatchDispatchFunction", False),
    ):
        listing = [s for s in function_statements(stack, function) if "s3:ListBucket" in as_list(s["Action"])]
        model_listing = [s for s in listing if "ModelPrefix" in flat(s.get("Condition"))]
        assert bool(model_listing) is lists_models, function
        for statement in listing:  # the model bucket under the prefix; the stack's own results bucket whole
            results = flat(statement["Resource"]).endswith("-results-${AWS::AccountId}-${AWS::Region}'}")
            assert results or set(statement["Condition"]) == {"StringLike"}, (function, statement)
        for statement in model_listing:
            assert statement["Effect"] == "Allow"
            assert statement["Condition"]["StringLike"]["s3:prefix"] == {"Fn::Sub": "${ModelPrefix}/*"}
            text, names = statement["Resource"]["Fn::Sub"]
            assert text == "arn:${AWS::Partition}:s3:::${Bucket}" and names == {"Bucket": bucket}  # the bucket, no key


@pytest.mark.parametrize("bucket_name", ["", "existing-models"])
def test_every_created_bucket_refuses_plain_http(transformed, bucket_name):
    stack = deployed(transformed, {"ModelBucketName": bucket_name})
    out = stack["Resources"]
    buckets = {name for name, r in out.items() if r["Type"] == "AWS::S3::Bucket"}
    assert ("ModelBucket" in buckets) is (bucket_name == "")
    policies = {
        r["Properties"]["Bucket"]["Ref"]: r["Properties"]["PolicyDocument"]["Statement"]
        for r in out.values()
        if r["Type"] == "AWS::S3::BucketPolicy"
    }
    assert set(policies) == buckets
    for name, statements_ in policies.items():
        deny = [
            s
            for s in statements_
            if s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert deny, name
        assert deny[0]["Principal"] == "*" and deny[0]["Action"] == "s3:*"
        assert {flat(r) for r in deny[0]["Resource"]} == {
            flat({"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::${{{name}}}"}),
            flat({"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::${{{name}}}/*"}),
        }
    known = set(out) | set(stack["Parameters"]) | PSEUDO_PARAMETERS
    for name, body in out.items():  # nothing refers to the model bucket when the stack does not create it
        assert references(body) <= known, (name, references(body) - known)


def test_sam_transform_output(transformed):
    out = transformed["Resources"]
    mappings = [r["Properties"] for r in out.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert len(mappings) == 2  # the chunk queue → worker, the dead-letter queue → recorder
    assert all(m["FunctionResponseTypes"] == ["ReportBatchItemFailures"] for m in mappings)
    assert any(r["Type"] == "AWS::ApiGateway::UsagePlan" for r in out.values())
    assert any(r["Type"] == "AWS::Lambda::LayerVersion" for r in out.values())
    roles = [r["Properties"] for r in out.values() if r["Type"] == "AWS::IAM::Role"]
    for role in roles:  # SAM's own additions (SQS polling, X-Ray, logs) are scoped managed policies, no "*" S3
        for policy in role.get("Policies", []):
            for statement in alternatives(policy["PolicyDocument"]["Statement"]):
                for action in as_list(statement["Action"]):
                    assert not (action.startswith("s3:") and statement.get("Resource") == "*"), statement


def test_iam_least_privilege(template):
    functions = resources(template, "AWS::Serverless::Function")
    assert set(functions) == {"ApiFunction", *BATCH_FUNCTIONS}
    for name, function in functions.items():
        for statement in statements(function):
            actions = as_list(statement["Action"])
            targets = [flat(r) for r in as_list(statement["Resource"])]
            assert "*" not in actions and not any(a.endswith(":*") for a in actions), (name, actions)
            assert not any(t.strip() in ("*", "'*'") for t in targets), (name, targets)
            writes = [a for a in actions if a in ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")]
            if writes:
                assert all("/batch/out/*" in t or "/batch/work/*" in t for t in targets), (name, statement)
            if any("ModelPrefix" in t for t in targets):
                assert actions == ["s3:GetObject"] or actions == "s3:GetObject", (name, statement)
            if "s3:ListBucket" in actions:  # of the stack's own results bucket only
                assert all(t.endswith("-results-${AWS::AccountId}-${AWS::Region}'}") for t in targets), (
                    name,
                    statement,
                )
    for name, policy in resources(template, "AWS::IAM::Policy").items():  # policies attached to the functions' roles
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert as_list(statement["Action"]) == ["s3:ListBucket"] and statement["Effect"] == "Allow", name
            assert statement["Condition"] == {"StringLike": {"s3:prefix": {"Fn::Sub": "${ModelPrefix}/*"}}}, name
    api_actions = {a for s in statements(functions["ApiFunction"]) for a in as_list(s["Action"])}
    # The API reads models and the watermark key (the stack's secret, or the deployer's SSM parameter).
    assert api_actions == {"s3:GetObject", "secretsmanager:GetSecretValue", "ssm:GetParameter"}


def test_buckets_encrypted_and_private(template):
    for name, bucket in resources(template, "AWS::S3::Bucket").items():
        props = bucket["Properties"]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], name
        assert all(props["PublicAccessBlockConfiguration"].values()), name
    results = template["Resources"]["ResultsBucket"]["Properties"]
    expiry = {r["Prefix"]: r["ExpirationInDays"] for r in results["LifecycleConfiguration"]["Rules"] if "Prefix" in r}
    assert expiry["batch/work/"] == 7 and "batch/in/" in expiry and "batch/out/_work/" not in expiry


def test_api_timeouts_auth_and_throttling(template):
    api = template["Resources"]["ApiFunction"]["Properties"]
    from handlers.api import GATEWAY_TIMEOUT_S

    assert api["Timeout"] < GATEWAY_TIMEOUT_S  # API Gateway's integration limit
    assert int(api["Environment"]["Variables"]["TIME_MARGIN_MS"]) < api["Timeout"] * 1000
    gateway = template["Resources"]["NewsApi"]["Properties"]
    assert template["Parameters"]["ApiAuthMode"]["Default"] == "API_KEY"  # safe by default
    assert gateway["MethodSettings"][0]["ThrottlingRateLimit"]
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in api["Events"].values()}
    assert routes == {("any", PROXY), ("any", "/")}  # the root: for `sam local start-api`, which reads events


def test_traces_capture_no_responses_or_errors_by_default(transformed):
    """Defence in depth beside the handlers' own decorator flags (tests/test_security.py): every function's
    environment switches powertools' capture of responses and errors off."""
    functions = [r for r in transformed["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert len(functions) == 4
    for function in functions:
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"
        assert variables["POWERTOOLS_TRACER_CAPTURE_ERROR"] == "false"


def test_batch_wiring(template):
    worker = template["Resources"]["BatchWorkerFunction"]["Properties"]
    event = worker["Events"]["Chunks"]["Properties"]
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = template["Resources"]["BatchQueue"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] >= 1
    alarm = template["Resources"]["BatchDeadLetterAlarm"]["Properties"]
    assert "BatchDeadLetterQueue" in flat(alarm["Dimensions"])
    dispatch = template["Resources"]["BatchDispatchFunction"]["Properties"]
    assert dispatch["Events"]["Upload"]["Properties"]["Filter"]["S3Key"]["Rules"] == [
        {"Name": "prefix", "Value": "batch/in/"}
    ]
    assert dispatch["Layers"] and dispatch["Runtime"] == "python3.12"


def test_every_handler_named_by_the_template_exists(template):
    names = []
    for function in resources(template, "AWS::Serverless::Function").values():
        props = function["Properties"]
        if props.get("PackageType") == "Image":
            names.append(props["ImageConfig"]["Command"][0])
            assert function["Metadata"]["Dockerfile"] == "infra/lambda/Dockerfile"
        else:
            names.append("handlers." + props["Handler"])  # CodeUri is handlers/
    for dotted in names:
        module, attribute = dotted.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), attribute)), dotted


def test_image_requirements_pin_every_serving_dependency():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {re.split(r"[\[<>=!~ ]", d)[0].lower() for d in project}
    pinned = {}
    for line in (ROOT / "infra/lambda/requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[re.split(r"\[", name)[0].lower()] = version
    assert wanted <= set(pinned), wanted - set(pinned)
    assert all(pinned.values()), "every image requirement is pinned with =="
    assert pinned["torch"] == "2.13.0"


def test_dockerfile_uses_the_lambda_base_and_cpu_torch():
    dockerfile = (ROOT / "infra/lambda/Dockerfile").read_text()
    assert "public.ecr.aws/lambda/python:3.12" in dockerfile
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in dockerfile
    # Online, torch comes from the CPU index alone (an extra index lets pip choose PyPI's CUDA build), and the
    # rest from PyPI without torch; offline, everything from the wheelhouse.
    assert "--extra-index-url" not in dockerfile
    assert "--index-url ${TORCH_INDEX_URL} \"$(grep -E '^torch==' /tmp/build/requirements.txt)\"" in dockerfile
    assert "grep -vE '^torch==' /tmp/build/requirements.txt > /tmp/build/without-torch.txt" in dockerfile
    assert "--no-index --find-links /tmp/build -r /tmp/build/requirements.txt" in dockerfile
    assert (
        dockerfile.index("requirements.txt") < dockerfile.index("COPY --from=deps") < dockerfile.index("COPY handlers")
    )
    assert "HF_HOME=/tmp" in dockerfile
    # No model baked in by default; --build-arg BAKED_MODELS bakes a mirror, copied last (one thin layer).
    assert "ARG BAKED_MODELS=infra/lambda/no-models" in dockerfile
    assert dockerfile.rindex("COPY ${BAKED_MODELS}/ /opt/newsgen/baked/") > dockerfile.index("COPY handlers")
    assert [p.name for p in (ROOT / "infra/lambda/no-models").iterdir()] == ["README.md"]
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"!infra/lambda/no-models/", "!infra/lambda/baked/"} <= set(ignored)


def test_the_image_and_the_package_ship_the_playground():
    """The page is served from the function: its files are under handlers/, which the image copies whole and
    the build context (.dockerignore, last matching pattern wins) lets through."""
    import tomllib

    from handlers.api import PAGE_FILES, PLAYGROUND

    dockerfile = (ROOT / "infra/lambda/Dockerfile").read_text()
    assert "COPY handlers ${LAMBDA_TASK_ROOT}/handlers" in dockerfile
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip()]
    patterns = [p for p in patterns if not p.startswith("#")]

    def ignored(path: str) -> bool:
        verdict = False
        for pattern in patterns:
            negated, glob = pattern.startswith("!"), pattern.lstrip("!").rstrip("/")
            parents = [path, *("/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1))]
            if any(fnmatch.fnmatchcase(candidate, glob) for candidate in parents):
                verdict = not negated
        return verdict

    assert ignored("tests/conftest.py") and not ignored("handlers/api.py")  # the matcher reads the file right
    for name, _ in PAGE_FILES.values():
        path = (PLAYGROUND / name).relative_to(ROOT).as_posix()
        assert (ROOT / path).is_file() and path.startswith("handlers/") and not ignored(path), path
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "playground/*" in package_data["handlers"]


def test_samconfig_overrides_name_template_parameters(template):
    import shlex
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    overrides = dict(
        item.split("=", 1) for item in shlex.split(config["default"]["deploy"]["parameters"]["parameter_overrides"])
    )
    assert set(overrides) <= set(template["Parameters"]), set(overrides) - set(template["Parameters"])
    for name, value in overrides.items():
        allowed = template["Parameters"][name].get("AllowedValues")
        assert allowed is None or value in allowed, (name, value)
    assert overrides["ApiAuthMode"] == "API_KEY" and overrides["ProvisionedConcurrency"] == "0"


def test_the_harness_reads_each_function_as_the_template_declares_it(template):
    """Local runs (make run, make invoke, make sam-local) take each function's entry point, memory, timeout
    and literal variables from template.yaml through the harness; checked here against cfn-lint's reading."""
    from infra.local.harness import LOGICAL_IDS, functions

    assert set(functions()) == set(LOGICAL_IDS)
    for name, spec in functions().items():
        props = template["Resources"][spec.logical_id]["Properties"]
        memory = props["MemorySize"]
        if isinstance(memory, dict):
            memory = template["Parameters"][memory["Ref"]]["Default"]
        assert (spec.memory_mb, spec.timeout_s) == (memory, props["Timeout"]), name
        assert (
            spec.environment.items()
            >= {k: v for k, v in props["Environment"]["Variables"].items() if isinstance(v, str)}.items()
        ), name
        module, function = spec.handler.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), function)), name


# --- the batch path as CloudFormation deploys it (the SAM translator's output) ------------------------------
BATCH_FUNCTIONS = ("BatchDispatchFunction", "BatchWorkerFunction", "BatchDeadLetterRecorderFunction")
READS = {"s3:GetObject", "s3:ListBucket"}


def mapping_of(out: dict, function: str) -> dict:
    """The one SQS event source mapping of a function."""
    found = [
        r["Properties"]
        for r in out.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping" and r["Properties"]["FunctionName"] == {"Ref": function}
    ]
    assert len(found) == 1, (function, found)
    return found[0]


def role_statements(out: dict, function: str) -> list[dict]:
    """Every inline policy statement of a function's execution role (SAM's and the template's)."""
    role = out[function]["Properties"]["Role"]["Fn::GetAtt"][0]
    policies = out[role]["Properties"].get("Policies", [])
    return [s for p in policies for s in alternatives(p["PolicyDocument"]["Statement"])]


def arn_text(resource) -> str:
    if isinstance(resource, dict) and "Fn::Sub" in resource:
        inner = resource["Fn::Sub"]
        return inner if isinstance(inner, str) else inner[0]
    return resource if isinstance(resource, str) else flat(resource)


RESULTS = "${AWS::StackName}-results-${AWS::AccountId}-${AWS::Region}"


def results_keys(statement: dict) -> list[str]:
    """The key patterns a statement names in the results bucket ("*" for a resource of "*")."""
    keys = []
    for resource in as_list(statement.get("Resource", [])):
        text = arn_text(resource)
        if text == "*":
            keys.append("*")
        elif text.startswith(f"arn:${{AWS::Partition}}:s3:::{RESULTS}/"):
            keys.append(text.split(f"{RESULTS}/", 1)[1])
    return keys


def s3_grants(out: dict, function: str) -> dict[str, set[str]]:
    """action → the results-bucket key patterns it is allowed on; s3:ListBucket → its allowed prefixes."""
    grants: dict[str, set[str]] = {}
    for statement in role_statements(out, function):
        if statement["Effect"] != "Allow":
            continue
        for action in as_list(statement["Action"]):
            if not action.lower().startswith("s3:"):
                continue
            if action == "s3:ListBucket":
                prefixes = statement.get("Condition", {}).get("StringLike", {}).get("s3:prefix", "*")
                grants.setdefault(action, set()).update(as_list(prefixes))
            else:
                grants.setdefault(action, set()).update(results_keys(statement))
    return grants


def test_chunk_queue_visibility_covers_six_worker_timeouts(transformed):
    out = transformed["Resources"]
    worker = out["BatchWorkerFunction"]["Properties"]
    queue = out["BatchQueue"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["BatchDeadLetterQueue", "Arn"]}
    # Lambda refuses an SQS event source whose visibility timeout is under the function's timeout.
    recorder = out["BatchDeadLetterRecorderFunction"]["Properties"]
    assert out["BatchDeadLetterQueue"]["Properties"]["VisibilityTimeout"] >= 6 * recorder["Timeout"]
    assert out["BatchDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]


def test_worker_takes_one_chunk_per_invocation(transformed):
    mapping = mapping_of(transformed["Resources"], "BatchWorkerFunction")
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["BatchQueue", "Arn"]}
    assert mapping["BatchSize"] == 1  # each chunk gets the whole timeout
    assert mapping["ScalingConfig"]["MaximumConcurrency"] >= 2


def test_dead_letter_recorder_consumes_the_dead_letter_queue(transformed):
    out = transformed["Resources"]
    mapping = mapping_of(out, "BatchDeadLetterRecorderFunction")
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["BatchDeadLetterQueue", "Arn"]}
    assert mapping["BatchSize"] == 10 and mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    recorder = out["BatchDeadLetterRecorderFunction"]["Properties"]
    assert recorder["Handler"] == "batch.dead_letter_handler" and recorder["Runtime"] == "python3.12"
    assert recorder["Layers"] and "PackageType" not in recorder  # Zip on the layer: no torch
    assert recorder["Environment"]["Variables"]["RESULTS_BUCKET"] == {"Ref": "ResultsBucket"}
    assert "RESULTS_BUCKET" in {
        name.upper() for name in importlib.import_module("newsgen.settings").Settings.model_fields
    }
    consumers = {
        r["Properties"]["FunctionName"]["Ref"]
        for r in out.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
        and r["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["BatchDeadLetterQueue", "Arn"]}
    }
    assert consumers == {"BatchDeadLetterRecorderFunction"}
    assert out["BatchDeadLetterRecorderFunctionLogs"]["Properties"]["LogGroupName"] == {
        "Fn::Sub": "/aws/lambda/${BatchDeadLetterRecorderFunction}"
    }


def test_dead_letter_alarm_notifies_the_alert_topic(transformed):
    stack = deployed(transformed, {})
    out = stack["Resources"]
    alarm = out["BatchDeadLetterAlarm"]["Properties"]
    assert out["BatchAlerts"]["Type"] == "AWS::SNS::Topic"
    assert alarm["AlarmActions"] == [{"Ref": "BatchAlerts"}] and alarm["OKActions"] == [{"Ref": "BatchAlerts"}]
    # The recorder empties the queue within seconds: count what it received, not what stays visible.
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (
        "AWS/SQS",
        "NumberOfMessagesReceived",
        "Sum",
    )
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["BatchDeadLetterQueue", "QueueName"]}}
    ]
    assert (alarm["Threshold"], alarm["ComparisonOperator"], alarm["Period"]) == (0, "GreaterThanThreshold", 300)
    assert stack["Outputs"]["BatchAlerts"]["Value"] == {"Ref": "BatchAlerts"}
    assert stack["Outputs"]["BatchDeadLetterQueueUrl"]["Value"] == {"Ref": "BatchDeadLetterQueue"}


@pytest.mark.parametrize("email", ["", "ops@example.com"])
def test_alert_email_is_subscribed_only_when_given(transformed, email):
    out = deployed(transformed, {"AlertEmail": email})["Resources"]
    subscriptions = [r["Properties"] for r in out.values() if r["Type"] == "AWS::SNS::Subscription"]
    if not email:
        assert subscriptions == []
        return
    assert subscriptions == [
        {"TopicArn": {"Ref": "BatchAlerts"}, "Protocol": "email", "Endpoint": {"Ref": "AlertEmail"}}
    ]
    pattern = transformed["Parameters"]["AlertEmail"]["AllowedPattern"]
    assert re.fullmatch(pattern, email) and re.fullmatch(pattern, "") and not re.fullmatch(pattern, "not an address")


def test_dispatcher_failures_go_to_the_alert_topic(transformed):
    out = transformed["Resources"]
    configs = [
        r["Properties"]
        for r in out.values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig"
        and r["Properties"]["FunctionName"] == {"Ref": "BatchDispatchFunction"}
    ]
    assert len(configs) == 1
    config = configs[0]
    assert config["MaximumRetryAttempts"] == 2
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == {"Ref": "BatchAlerts"}
    publish = [
        s
        for s in role_statements(out, "BatchDispatchFunction")
        if "sns:publish" in {a.lower() for a in as_list(s["Action"])}
    ]
    assert publish and all(s["Resource"] == {"Ref": "BatchAlerts"} for s in publish)
    assert out["BatchDispatchFunction"]["Properties"]["Timeout"] >= 300  # it streams inputs of up to 256 MiB


@pytest.mark.parametrize("function", BATCH_FUNCTIONS)
def test_batch_function_s3_rights_cover_the_work_files(transformed, function):
    grants = s3_grants(transformed["Resources"], function)
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert {"batch/out/*", "batch/work/*"} <= grants.get(action, set()), (function, action, grants)
    assert "batch/in/*" in grants["s3:GetObject"]
    # Unconditioned: the lock and owner files are read before they exist, and S3 answers a missing key with
    # 404 only to a caller allowed to list the bucket (403 otherwise); a prefix condition may not count.
    assert grants.get("s3:ListBucket") == {"*"}, grants
    if function != "BatchDispatchFunction":  # they may assemble a job: its results are a multipart upload
        assert grants.get("s3:AbortMultipartUpload") == {"batch/out/*"}, grants


def test_no_function_can_write_the_inputs(transformed):
    out = transformed["Resources"]
    functions = [name for name, r in out.items() if r["Type"] == "AWS::Lambda::Function"]
    assert set(BATCH_FUNCTIONS) <= set(functions)
    for function in functions:
        for statement in role_statements(out, function):
            actions = {a for a in as_list(statement["Action"]) if a.lower().startswith("s3:") or a == "*"}
            if statement["Effect"] != "Allow" or actions <= READS:
                continue
            for key in results_keys(statement):
                assert not fnmatch.fnmatchcase("batch/in/a/prompts.jsonl", key), (function, statement)


SSM_KEYRING = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${WatermarkKeysParameter}"


@pytest.mark.parametrize(
    "keys_parameter, action, resource, secret",
    [
        ("", "secretsmanager:GetSecretValue", {"Ref": "WatermarkKeys"}, {"Ref": "WatermarkKeys"}),
        ("/newsgen/watermark-keys", "ssm:GetParameter", {"Fn::Sub": SSM_KEYRING}, ""),
    ],
)
def test_only_the_generating_functions_read_the_watermark_key_and_only_that_one(
    transformed, keys_parameter, action, resource, secret
):
    """By default the stack's own secret; with WatermarkKeysParameter, the deployer's SSM parameter instead."""
    stack = deployed(transformed, {"WatermarkKeysParameter": keys_parameter})
    assert ("WatermarkKeys" in stack["Resources"]) is (keys_parameter == "")
    for name, body in stack["Resources"].items():
        if body["Type"] != "AWS::Lambda::Function":
            continue
        reads = [
            s
            for s in function_statements(stack, name)
            if any(a.lower().split(":")[0] in ("ssm", "secretsmanager", "kms") for a in as_list(s["Action"]))
        ]
        if name in ("ApiFunction", "BatchWorkerFunction"):  # they generate, so they mark
            assert len(reads) == 1 and as_list(reads[0]["Action"]) == [action], (name, reads)
            assert reads[0]["Resource"] == resource, (name, reads)
        else:
            assert reads == [], (name, reads)
        variables = body["Properties"]["Environment"]["Variables"]
        assert variables["WATERMARK"] == {"Ref": "Watermark"}
        assert variables["WATERMARK_KEYS_PARAMETER"] == {"Ref": "WatermarkKeysParameter"}
        assert variables["WATERMARK_KEYS_SECRET"] == secret


def test_the_watermark_is_on_unless_the_deployment_says_otherwise(template):
    parameters = template["Parameters"]
    assert parameters["Watermark"]["Default"] == "true" and parameters["Watermark"]["AllowedValues"] == [
        "true",
        "false",
    ]
    pattern = re.compile(parameters["WatermarkKeysParameter"]["AllowedPattern"])
    assert parameters["WatermarkKeysParameter"]["Default"] == "" and pattern.fullmatch("")
    assert pattern.fullmatch("/newsgen/watermark-keys") and not pattern.fullmatch("newsgen")


def test_the_stack_generates_a_watermark_seed_the_library_reads(template):
    """The secret's generated value is what newsgen.watermark parses as a seed."""
    from newsgen.watermark import SEED_SCHEME

    secret = template["Resources"]["WatermarkKeys"]
    generate = secret["Properties"]["GenerateSecretString"]
    assert json.loads(generate["SecretStringTemplate"]) == {"scheme": SEED_SCHEME}
    assert generate["GenerateStringKey"] == "seed" and generate["PasswordLength"] >= 32
    assert secret["DeletionPolicy"] == "Retain"  # texts already marked stay detectable


# --- what a deploy with the defaults needs that it does not create ----------------------------------------
# An environment variable that names something a function reads: a bucket, a queue, a parameter, a secret…
EXTERNAL = re.compile(r"(BUCKET|QUEUE|PARAMETER|SECRET|TABLE|TOPIC|STREAM)(_URL|_ARN|_NAME)?$")


def required_at_deploy(parameter: dict) -> bool:
    """CloudFormation refuses the deploy until someone gives it a value: no default, or an empty default that
    its own checks reject."""
    if "Default" not in parameter:
        return True
    pattern = parameter.get("AllowedPattern")
    rejects_empty = int(parameter.get("MinLength", 0)) > 0 or (pattern is not None and not re.match(pattern, ""))
    return str(parameter["Default"]) == "" and rejects_empty


def unprovided(value, stack: dict, parameters: dict) -> list[str]:
    """What a variable's value points at that the stack neither creates nor makes someone give at deploy."""
    if resolve(value, stack["Parameters"], {}) == "":
        return []  # the function reads nothing there (e.g. an optional parameter left empty)
    names = references(value) - PSEUDO_PARAMETERS
    if not names:
        return [f"{value!r} names nothing the stack creates"]
    return [
        name
        for name in names
        if name not in stack["Resources"] and not (name in parameters and required_at_deploy(parameters[name]))
    ]


def test_a_deploy_with_the_defaults_creates_everything_its_functions_read(transformed):
    """`sam build && sam deploy --guided`, accepting every default, must answer: each bucket, queue, parameter
    or secret a function is told to read is a resource of the stack or a parameter CloudFormation makes the
    deployer give."""
    stack = deployed(transformed, {})
    checked = set()
    for name, body in stack["Resources"].items():
        if body["Type"] != "AWS::Lambda::Function":
            continue
        for variable, value in body["Properties"]["Environment"]["Variables"].items():
            if EXTERNAL.search(variable):
                checked.add(variable)
                assert not unprovided(value, stack, transformed["Parameters"]), (name, variable, value)
    assert {"MODEL_BUCKET", "RESULTS_BUCKET", "BATCH_QUEUE_URL", "WATERMARK_KEYS_PARAMETER"} <= checked
    # …and each is a setting the library reads (newsgen.settings), not a name nothing looks at.
    settings = {name.upper() for name in importlib.import_module("newsgen.settings").Settings.model_fields}
    assert checked <= settings, checked - settings


@pytest.mark.parametrize(
    "parameter, verdict",
    [
        ({"Type": "String"}, True),
        ({"Type": "String", "Default": ""}, False),
        ({"Type": "String", "Default": "", "AllowedPattern": "^.+$"}, True),
        ({"Type": "String", "Default": "", "MinLength": 1}, True),
        ({"Type": "String", "Default": "/newsgen/keys"}, False),
    ],
)
def test_required_at_deploy_tells_a_given_parameter_from_a_default(parameter, verdict):
    assert required_at_deploy(parameter) is verdict
