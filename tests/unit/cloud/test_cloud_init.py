"""Cloud-init user data: valid, minimal, no secret, and sovereign."""

from __future__ import annotations

import pytest
import yaml
from pulumi_mocks import SSH_KEY, sample_config

from visio_infra.cloud.openstack.cloud_init import ADMIN_USER, UserDataError, user_data
from visio_infra.model.config.base import StackConfigError
from visio_infra.model.rendering import render_string
from visio_infra.model.sizing.plan import plan
from visio_infra.model.sovereignty import describe_foreign_endpoints, find_foreign_endpoints, foreign_owner
from visio_infra.model.topology import plan_nodes

SECRET_KEYS = {"passwd", "hashed_passwd", "plain_text_passwd", "password", "chpasswd", "write_files",
               "ca_certs", "ssh_keys", "runcmd", "bootcmd"}
"""cloud-init keys that would carry a password, a private key or arbitrary files/commands."""
SECRET_WORDS = ("secret", "token", "api_key", "-----begin", "private key")


def _walk(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, key), key, value
            yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, i))


@pytest.fixture(scope="module")
def config():
    return sample_config()


@pytest.fixture(scope="module")
def nodes(config):
    return plan_nodes(config, plan(config).counts)


def test_every_node_gets_valid_cloud_config(config, nodes):
    for node in nodes:
        text = user_data(config, node)
        assert text.startswith("#cloud-config\n")
        doc = yaml.safe_load(text)
        assert doc["hostname"] == node.name
        assert doc["fqdn"] == f"{node.name}.visio.exemple.gouv.fr"
        assert doc["apt"]["primary"][0]["uri"] == "https://miroir.exemple.gouv.fr/debian"
        assert doc["apt"]["security"][0]["uri"] == "https://miroir.exemple.gouv.fr/debian-security"
        (user,) = doc["users"]
        assert user["name"] == ADMIN_USER
        assert user["ssh_authorized_keys"] == [SSH_KEY]
        assert user["lock_passwd"] is True
        assert doc["ssh_pwauth"] is False and doc["disable_root"] is True


def test_user_data_differs_only_by_node(config, nodes):
    first, second = (user_data(config, n) for n in nodes[:2])
    assert first != second
    assert first.replace(nodes[0].name, "X") == second.replace(nodes[1].name, "X")


def test_no_secret_in_user_data(config, nodes):
    for node in nodes:
        text = user_data(config, node)
        for path, key, value in _walk(yaml.safe_load(text)):
            assert key not in SECRET_KEYS, (node.name, path)
            if isinstance(value, str):
                assert not any(word in value.lower() for word in SECRET_WORDS), (node.name, path, value)
        # The only credential-like material is the operators' *public* keys.
        assert "PRIVATE" not in text


def test_keys_are_quoted_so_odd_comments_stay_one_string():
    key = SSH_KEY.replace("ops@exemple.fr", "ops: #1 {team}")
    config = sample_config(cloud={"ssh_public_keys": [key]})
    node = plan_nodes(config, plan(config).counts)[0]
    doc = yaml.safe_load(user_data(config, node))
    assert doc["users"][0]["ssh_authorized_keys"] == [key]


def test_foreign_mirror_is_refused_even_if_config_validation_were_bypassed(config, nodes):
    mirror = "https://debian-mirror.storage.googleapis.com/debian"
    with pytest.raises(StackConfigError, match="non-European"):
        sample_config(cloud={"package_mirror": mirror})
    # Defence in depth: the renderer checks its own output too.
    bad = config.model_copy(update={"cloud": config.cloud.model_copy(update={"package_mirror": mirror})})
    with pytest.raises(UserDataError, match=r"storage\.googleapis\.com .*Google"):
        user_data(bad, nodes[0])


def test_undefined_template_variable_is_an_error():
    from jinja2 import UndefinedError

    with pytest.raises(UndefinedError):
        render_string("{{ missing }}", {})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("stun_servers: [stun.l.google.com:19302]", ["stun.l.google.com"]),
        ("urls: stun:global.stun.twilio.com:3478", ["global.stun.twilio.com"]),
        ("backend: https://api.pulumi.com", ["api.pulumi.com"]),
        ("nameserver 8.8.8.8\nnameserver 2606:4700:4700::1111", ["2606:4700:4700::1111", "8.8.8.8"]),
        ("s3://state?endpoint=s3.eu-west-3.amazonaws.com", ["s3.eu-west-3.amazonaws.com"]),
        ("STUN.CLOUDFLARE.COM", ["stun.cloudflare.com"]),
    ],
)
def test_foreign_endpoints_found(text, expected):
    assert find_foreign_endpoints(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "turn_servers: [{host: turn.visio.interieur.gouv.fr, port: 443}]",
        "http://mirror.example/debian and https://security.mirror.example/debian-security",
        "s3://visio-state?endpoint=s3.gra.io.cloud.ovh.net&region=gra",
        "nameserver 10.0.0.2",
        "notgoogle.community and google.com.example.fr and 18.8.8.81",
        "ipv6 fd00::8888 and a time 12:30:45",
    ],
)
def test_european_or_private_endpoints_pass(text):
    assert find_foreign_endpoints(text) == []


def test_owner_is_named():
    assert foreign_owner("stun1.l.google.com") is not None
    assert foreign_owner("visio.gouv.fr") is None
    assert describe_foreign_endpoints("app.pulumi.com")[0].startswith("app.pulumi.com (Pulumi Cloud")
