"""load_config: defaults and discovery, ${VAR} expansion, and every error naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homelab_release.config import (
    CONFIG_NAME,
    DEFAULT_MANIFESTS_BRANCH,
    Environment,
    ReleaseConfig,
    Service,
    load_config,
)
from homelab_release.errors import ConfigError


def write_config(root: Path, text: str) -> Path:
    path = root / CONFIG_NAME
    path.write_text(text, encoding="utf-8")
    return path


def mkservice(root: Path, name: str, dockerfile: bool = True) -> None:
    (root / name).mkdir(parents=True)
    if dockerfile:
        (root / name / "Dockerfile").write_text("FROM scratch\n")


# -- defaults -----------------------------------------------------------------------------


def test_without_a_file_services_are_folders_with_a_dockerfile(tmp_path: Path) -> None:
    for name in ("vote", "result", "worker"):
        mkservice(tmp_path, name)
    mkservice(tmp_path, "docs", dockerfile=False)
    mkservice(tmp_path, ".hidden")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    config = load_config(tmp_path, env={})
    assert config.source is None
    assert config.root == tmp_path.resolve()
    assert [s.name for s in config.services] == ["result", "vote", "worker"]
    assert config.service("vote") == Service(
        name="vote",
        paths=("vote/**/*",),
        context="vote",
        dockerfile="vote/Dockerfile",
        image="vote",
    )


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = load_config(tmp_path, env={})
    assert config.services == ()
    assert config.environments == (
        Environment("develop", "k8s/overlays/develop"),
        Environment("stage", "k8s/overlays/stage", promote_from="develop"),
    )
    assert config.registry == ""
    assert config.manifests_branch == DEFAULT_MANIFESTS_BRANCH
    assert config.always == ()
    assert config.default_branch == ""
    assert "no homelab-release.toml" in config.where


def test_registry_defaults_to_ci_registry_image(tmp_path: Path) -> None:
    config = load_config(tmp_path, env={"CI_REGISTRY_IMAGE": "registry.example.com/group/app/"})
    assert config.registry == "registry.example.com/group/app"


def test_full_file(tmp_path: Path) -> None:
    mkservice(tmp_path, "src/vote")
    mkservice(tmp_path, "worker")
    path = write_config(
        tmp_path,
        """
[registry]
repository = "127.0.0.1:5000/homelab"
insecure = ["127.0.0.1:5000"]

[manifests]
url = "https://gitlab.example.com/group/manifests.git"
branch = "manifests"
author = "Bot <bot@example.com>"

[changes]
always = ["homelab-release.toml", ".gitlab-ci.yml"]
default_branch = "develop"

[services.vote]
paths = ["vote/**/*", "shared/*.proto"]
context = "src/vote"
image = "vote-app"
kustomize_name = "vote"

[services.worker]

[environments.develop]
overlay = "deploy/dev"

[environments.stage]
promote_from = "develop"

[environments.prod]
overlay = "deploy/prod"
promote_from = "stage"
""",
    )
    config = load_config(tmp_path, env={})
    assert config.source == path
    assert config.where == str(path)
    assert config.registry == "127.0.0.1:5000/homelab"
    assert config.insecure_registries == ("127.0.0.1:5000",)
    assert config.manifests_url == "https://gitlab.example.com/group/manifests.git"
    assert config.manifests_branch == "manifests"
    assert config.author == "Bot <bot@example.com>"
    assert config.always == ("homelab-release.toml", ".gitlab-ci.yml")
    assert config.default_branch == "develop"
    assert config.service("vote") == Service(
        "vote",
        ("vote/**/*", "shared/*.proto"),
        "src/vote",
        "src/vote/Dockerfile",
        "vote-app",
        "vote",
    )
    assert config.service("worker") == Service(
        "worker", ("worker/**/*",), "worker", "worker/Dockerfile", "worker"
    )
    assert config.environments == (
        Environment("develop", "deploy/dev"),
        Environment("stage", "k8s/overlays/stage", "develop"),
        Environment("prod", "deploy/prod", "stage"),
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            "[services.vtoe]\n",
            r"\[services\.vtoe\]: its build context 'vtoe' is not a folder of .*; set "
            r"services\.vtoe\.context, or rename the table \(did you mean \[services\.vote\]\?\); "
            r"folders with a Dockerfile: result, vote$",
        ),
        (
            '[services.vote]\ndockerfile = "vote/Containerfile"\n',
            r"\[services\.vote\]: Dockerfile 'vote/Containerfile' does not exist in .*; add it or "
            r"set services\.vote\.dockerfile",
        ),
        (
            "[services.api]\n",
            r"\[services\.api\]: its build context 'api' is not a folder .*rename the table; "
            r"folders with a Dockerfile: result, vote$",
        ),
    ],
)
def test_a_service_whose_sources_do_not_exist_is_an_error(
    tmp_path: Path, table: str, message: str
) -> None:
    mkservice(tmp_path, "vote")
    mkservice(tmp_path, "result")
    write_config(tmp_path, table)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path, env={})


def test_listed_services_replace_discovery(tmp_path: Path) -> None:
    mkservice(tmp_path, "vote")
    mkservice(tmp_path, "result")
    write_config(tmp_path, "[services.vote]\n")
    assert [s.name for s in load_config(tmp_path, env={}).services] == ["vote"]


def test_image_repository_and_overlay_name() -> None:
    service = Service("vote", ("vote/**/*",), "vote", "vote/Dockerfile", "vote-img")
    assert service.image_repository("r.example.com/g/") == "r.example.com/g/vote-img"
    assert service.image_repository("") == "vote-img"
    assert service.overlay_name("r.example.com/g") == "r.example.com/g/vote-img"
    named = Service("vote", (), "vote", "vote/Dockerfile", "vote", kustomize_name="vote")
    assert named.overlay_name("r.example.com/g") == "vote"


def test_lookups_name_what_exists(tmp_path: Path) -> None:
    mkservice(tmp_path, "vote")
    config = load_config(tmp_path, env={})
    with pytest.raises(ConfigError, match=r"no service 'nope' \(services: vote\)"):
        config.service("nope")
    with pytest.raises(
        ConfigError, match=r"no environment 'prod' \(environments: develop, stage\)"
    ):
        config.environment("prod")
    assert config.environment("stage").promote_from == "develop"
    with pytest.raises(ConfigError, match=r"registry\.repository"):
        config.require_registry()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "${MY_REGISTRY}",
            r"registry\.repository = '\$\{MY_REGISTRY\}', but the variable MY_REGISTRY is not set; "
            r"set it, or give a default: \$\{MY_REGISTRY:-VALUE\}",
        ),
        (
            "${HOST}/${GROUP}",
            r"registry\.repository = '\$\{HOST\}/\$\{GROUP\}', but the variable HOST, GROUP are not",
        ),
    ],
)
def test_an_unset_variable_is_named_with_its_key(tmp_path: Path, value: str, message: str) -> None:
    write_config(tmp_path, f'[registry]\nrepository = "{value}"\n')
    config = load_config(tmp_path, env={"CI_REGISTRY_IMAGE": "registry.example.com/g"})
    with pytest.raises(ConfigError, match=message):
        config.require_registry()
    defaulted = value.replace("}", ":-r.example.com}", 1)
    write_config(tmp_path, f'[registry]\nrepository = "{defaulted}"\n')
    assert load_config(tmp_path, env={}).require_registry().startswith("r.example.com")


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(tmp_path, env={})
    with pytest.raises(AttributeError):
        config.registry = "x"  # type: ignore[misc]


# -- ${VAR} expansion ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${REG}", {"REG": "r.example.com/g"}, "r.example.com/g"),
        ("${REG}/sub", {"REG": "r"}, "r/sub"),
        ("${REG}", {}, ""),
        ("${REG:-fallback}", {}, "fallback"),
        ("${REG:-fallback}", {"REG": ""}, "fallback"),
        ("${REG:-fallback}", {"REG": "set"}, "set"),
        ("${REG:-}", {}, ""),
        ("${A}${B}", {"A": "1", "B": "2"}, "12"),
        ("$REG", {"REG": "r"}, "$REG"),
        ("${1BAD}", {"1BAD": "x"}, "${1BAD}"),
        ("plain", {"plain": "x"}, "plain"),
        ("${REG:-a/b:c}", {}, "a/b:c"),
    ],
)
def test_variables_are_expanded(value: str, env: dict[str, str], expected: str) -> None:
    assert _registry_with(value, env) == expected.rstrip("/")


def _registry_with(value: str, env: dict[str, str]) -> str:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        write_config(Path(tmp), f'[registry]\nrepository = "{value}"\n')
        return load_config(tmp, env=env).registry


def test_variables_are_expanded_in_lists_and_services(tmp_path: Path) -> None:
    mkservice(tmp_path, "vote")
    write_config(
        tmp_path,
        '[changes]\nalways = ["${CFG:-homelab-release.toml}"]\n'
        '[services.vote]\npaths = ["${SRC}/**/*"]\nimage = "${PREFIX:-x}-vote"\n',
    )
    config = load_config(tmp_path, env={"SRC": "apps/vote", "PREFIX": "hl"})
    assert config.always == ("homelab-release.toml",)
    assert config.service("vote").paths == ("apps/vote/**/*",)
    assert config.service("vote").image == "hl-vote"


def test_environment_defaults_to_os_environ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOMELAB_TEST_REGISTRY", "from-os")
    write_config(tmp_path, '[registry]\nrepository = "${HOMELAB_TEST_REGISTRY}"\n')
    assert load_config(tmp_path).registry == "from-os"


@given(
    st.text(alphabet=st.characters(blacklist_characters='"\\$', blacklist_categories=["Cc", "Cs"]))
)
def test_text_without_variables_is_kept(text: str) -> None:
    assert _registry_with(text, {"X": "y"}) == text.rstrip("/")


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[registy]\n",
            r"unknown table \[registy\] \(allowed: build, changes, environments, manifests",
        ),
        (
            "[registry]\nrepo = 'x'\n",
            r"unknown key registry\.repo \(allowed: repository, insecure\)",
        ),
        ("[manifests]\nbranh = 'x'\n", r"unknown key manifests\.branh"),
        ("[changes]\nalways = 'x'\n", r"changes\.always must be a list of strings"),
        ("[changes]\nalways = [1]\n", r"changes\.always must be a list of strings"),
        ("[changes]\ndefault_branch = 1\n", r"changes\.default_branch must be a str, not 1"),
        ("registry = 'x'\n", r"\[registry\] must be a table"),
        ("[registry]\nrepository = 5\n", r"registry\.repository must be a str, not 5"),
        ("[registry]\ninsecure = 'x'\n", r"registry\.insecure must be a list of strings"),
        ("services = 'vote'\n", r"\[services\] must hold tables like \[services\.NAME\]"),
        ("[services]\nvote = 1\n", r"\[services\] must hold tables"),
        ("[services.Vote]\n", r"\[services\.Vote\]: names use lowercase letters"),
        ("[services.vote]\npath = ['x']\n", r"unknown key services\.vote\.path \(allowed: paths,"),
        (
            "[services.vote]\npaths = 'vote/**/*'\n",
            r"services\.vote\.paths must be a list of strings",
        ),
        ("[services.vote]\npaths = ['']\n", r"services\.vote\.paths has an empty pattern"),
        (
            "[services.vote]\npaths = ['${UNSET}']\n",
            r"services\.vote\.paths has an empty pattern \(the variable UNSET is not set\)",
        ),
        ("[services.vote]\ncontext = ['x']\n", r"services\.vote\.context must be a str"),
        ("[environments.dev]\noverlay = 1\n", r"environments\.dev\.overlay must be a str"),
        ("[environments.dev]\nbranch = 'x'\n", r"unknown key environments\.dev\.branch"),
        (
            "[environments.stage]\npromote_from = 'develop'\n",
            r"environments\.stage\.promote_from = 'develop' names no environment \(environments: stage\)",
        ),
        (
            "[environments.a]\npromote_from = 'a'\n",
            r"environments\.a cannot promote from itself",
        ),
        (
            "[environments.a]\npromote_from = 'b'\n[environments.b]\npromote_from = 'a'\n",
            r"environments promote in a circle \(a -> b -> a\)",
        ),
        (
            "[environments.a]\npromote_from = 'c'\n[environments.b]\npromote_from = 'a'\n"
            "[environments.c]\npromote_from = 'b'\n",
            r"environments promote in a circle \(a -> c -> b -> a\)",
        ),
        (
            "[environments.p]\nversions = '>=1,<<2'\n",
            r"environments\.p\.versions = '>=1,<<2' is not",
        ),
        ("[environments.p]\nversions = 1\n", r"environments\.p\.versions must be a str"),
        ("[environments.p]\nprereleases = true\n", r"environments\.p\.prereleases needs"),
        (
            "[environments.p]\nversions = '>=1'\nprereleases = 'yes'\n",
            r"environments\.p\.prereleases must be a bool",
        ),
        ("[environments.p]\nwrite = 'mr'\n", r"environments\.p\.write = 'mr'; use 'push' or"),
        (
            "[environments.p]\nmerge_request_labels = 'x'\n",
            r"environments\.p\.merge_request_labels must be a list of strings",
        ),
        ("[manifests]\nsigning_key = 1\n", r"manifests\.signing_key must be a str"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(tmp_path, env={})
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("[registry]\nrepository = \n", 2),
        ("[services.vote]\npaths = ['a'\n\n", 3),
        ("\n\n\n[changes\n", 4),
        ("[a]\nx = 1\nx = 2\n", 3),
    ],
)
def test_invalid_toml_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError, match="is not valid TOML") as info:
        load_config(tmp_path, env={})
    assert str(path) in str(info.value)
    assert f"line {line}" in str(info.value)


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / CONFIG_NAME).write_bytes(b"[registry]\nrepository = '\xff'\n")
    with pytest.raises(ConfigError, match="is not UTF-8"):
        load_config(tmp_path, env={})


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope is not a folder"):
        load_config(tmp_path / "nope", env={})


def test_release_config_where_names_the_root_without_a_file(tmp_path: Path) -> None:
    assert ReleaseConfig(root=tmp_path).where == f"{tmp_path} (no {CONFIG_NAME})"


def test_services_sharing_a_dotenv_variable_are_an_error(tmp_path: Path) -> None:
    mkservice(tmp_path, "vote-api")
    mkservice(tmp_path, "vote_api")
    write_config(tmp_path, "[services.vote-api]\n[services.vote_api]\n")
    with pytest.raises(
        ConfigError, match=r"'vote-api' and 'vote_api' would both report as VOTE_API_IMAGE"
    ):
        load_config(tmp_path, env={})


def test_a_token_in_the_manifests_url_stays_out_of_the_repr(tmp_path: Path) -> None:
    write_config(
        tmp_path, '[manifests]\nurl = "https://oauth2:${GITLAB_TOKEN}@gitlab.example/g/p.git"\n'
    )
    config = load_config(tmp_path, env={"GITLAB_TOKEN": "glpat-secret-value"})
    assert config.manifests_url == "https://oauth2:glpat-secret-value@gitlab.example/g/p.git"
    assert "glpat-secret-value" not in repr(config)


def test_author_default_and_override(tmp_path: Path) -> None:
    assert load_config(tmp_path, env={}).author == "homelab-release <homelab-release@localhost>"
    write_config(tmp_path, '[manifests]\nauthor = "Bot <bot@example.com>"\n')
    assert load_config(tmp_path, env={}).author == "Bot <bot@example.com>"


def test_release_controls_per_environment(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        "[manifests]\nsigning_key = '${KEY_FILE}'\n"
        "[environments.stage]\n"
        "[environments.prod]\npromote_from = 'stage'\nversions = '>=1.0,<2'\n"
        "prereleases = true\nwrite = 'merge-request'\nmerge_request_labels = ['release', 'prod']\n",
    )
    config = load_config(tmp_path, env={"KEY_FILE": "/run/key"})
    assert config.signing_key == "/run/key"
    stage, prod = config.environments
    assert (stage.versions, stage.write, stage.merge_request_labels) == (None, None, ())
    assert prod.versions is not None
    assert str(prod.versions.specifier) == "<2,>=1.0"
    assert prod.versions.prereleases is True
    assert prod.write == "merge-request"
    assert prod.merge_request_labels == ("release", "prod")
