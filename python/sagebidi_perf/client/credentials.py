"""AWS credentials and region for the ``sagemaker`` transport: a small part of the standard chain.

Credentials, first found wins:

1. given explicitly (a :class:`Credentials` or an ``(access_key_id, secret, [token])`` tuple);
2. the environment: ``AWS_ACCESS_KEY_ID`` + ``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``);
3. the shared credentials file (``AWS_SHARED_CREDENTIALS_FILE``, default
   ``~/.aws/credentials``), section ``[<profile>]``;
4. the config file (``AWS_CONFIG_FILE``, default ``~/.aws/config``), section
   ``[profile <profile>]`` (``[default]`` for the default profile), static keys only.

The profile is the ``profile`` argument, else ``AWS_PROFILE``, else ``AWS_DEFAULT_PROFILE``,
else ``default``. Role assumption, SSO, process credentials and instance metadata are not
supported: use the AWS CLI to export credentials into the environment.

Region: the argument, else ``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else the profile's
``region`` in the config file.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sagebidi_perf.client.errors import NoCredentialsError, NoRegionError

__all__ = ["Credentials", "CredentialsLike", "resolve_credentials", "resolve_region"]


@dataclass(frozen=True, slots=True)
class Credentials:
    """AWS credentials. The secret and token never appear in ``repr``."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    #: Where they came from ("explicit", "environment", a file path).
    source: str = "explicit"

    def __post_init__(self) -> None:
        if not self.access_key_id or not self.secret_access_key:
            raise ValueError("both an access key id and a secret access key are needed")

    def __repr__(self) -> str:
        token = ", session_token=***" if self.session_token else ""
        return (
            f"Credentials(access_key_id={self.access_key_id!r}, secret_access_key=***{token}, "
            f"source={self.source!r})"
        )


CredentialsLike = Credentials | tuple[str, str] | tuple[str, str, str | None]


def _profile_name(profile: str | None, env: Mapping[str, str]) -> str:
    return profile or env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or "default"


def _read_ini(
    path: Path, error: type[NoCredentialsError | NoRegionError]
) -> configparser.RawConfigParser | None:
    parser = configparser.RawConfigParser()  # raw: secrets may contain '%'
    try:
        with path.open(encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise error(f"cannot read {path}: {exc}") from exc
    return parser


def _files(env: Mapping[str, str]) -> tuple[Path, Path]:
    home = Path(env.get("HOME") or Path.home())
    credentials = env.get("AWS_SHARED_CREDENTIALS_FILE") or str(home / ".aws" / "credentials")
    config = env.get("AWS_CONFIG_FILE") or str(home / ".aws" / "config")
    return Path(credentials).expanduser(), Path(config).expanduser()


def _config_section(name: str) -> str:
    return "default" if name == "default" else f"profile {name}"


def resolve_credentials(
    credentials: CredentialsLike | None = None,
    *,
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Credentials:
    """Credentials from the argument, the environment or the shared files (see the module doc).

    ``environ`` replaces ``os.environ`` (tests). Raises :class:`NoCredentialsError` saying what
    was tried.
    """
    if credentials is not None:
        if isinstance(credentials, Credentials):
            return credentials
        if isinstance(credentials, tuple) and len(credentials) in (2, 3):
            return Credentials(*credentials)
        raise TypeError("credentials must be a Credentials or (access_key_id, secret[, token])")
    env = os.environ if environ is None else environ
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        token = env.get("AWS_SESSION_TOKEN") or env.get("AWS_SECURITY_TOKEN") or None
        return Credentials(key, secret, token, "environment")
    name = _profile_name(profile, env)
    credentials_file, config_file = _files(env)
    tried = ["AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"]
    for path, section in ((credentials_file, name), (config_file, _config_section(name))):
        tried.append(f"[{section}] in {path}")
        parser = _read_ini(path, NoCredentialsError)
        if parser is None or not parser.has_section(section):
            continue
        values = parser[section]
        key, secret = values.get("aws_access_key_id"), values.get("aws_secret_access_key")
        if key and secret:
            token = values.get("aws_session_token") or values.get("aws_security_token") or None
            return Credentials(key.strip(), secret.strip(), token and token.strip(), str(path))
    raise NoCredentialsError("no AWS credentials found; tried " + ", ".join(tried))


def resolve_region(
    region: str | None = None,
    *,
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The region from the argument, ``AWS_REGION``, ``AWS_DEFAULT_REGION`` or the config file.

    Raises :class:`NoRegionError` if none is set.
    """
    if region:
        return region
    env = os.environ if environ is None else environ
    found = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if found:
        return found
    _, config_file = _files(env)
    section = _config_section(_profile_name(profile, env))
    parser = _read_ini(config_file, NoRegionError)
    if parser is not None and parser.has_section(section):
        value = parser[section].get("region")
        if value and value.strip():
            return value.strip()
    raise NoRegionError(
        "no AWS region: pass region=, or set AWS_REGION / AWS_DEFAULT_REGION, "
        f"or 'region' in [{section}] of {config_file}"
    )
