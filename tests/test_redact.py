"""Credentials never reach a line: in every form a libvirt URI can take, in our text and in libvirt's."""

from __future__ import annotations

import subprocess

import pytest

from kvm_telegraf.connection import error_message, redact_uri
from kvm_telegraf.doctor import own_command
from kvm_telegraf.redact import redact
from tests.harness.cli import KVM_TELEGRAF
from tests.harness.imports import modules_after_run

SECRET = "s3cr3t"  # in every password and secret value below; no line may show it


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("qemu+ssh://root:s3cr3tPW@kvm1/system", "qemu+ssh://***@kvm1/system"),
        ("qemu+ssh://user:s3cr3tPW/x@kvm1/system", "qemu+ssh://***@kvm1/system"),  # a "/" in the password
        ("qemu+ssh:user:s3cr3tPW@kvm1/system", "qemu+ssh:***@kvm1/system"),  # no "//": libvirt opens it all the same
        ("qemu+ssh://user:s3cr3t@pw@kvm1/system", "qemu+ssh://***@kvm1/system"),  # an "@" in the password
        ("qemu+ssh://user:s3cr3t#pw@kvm1/system", "qemu+ssh://***@kvm1/system"),  # a "#"
        ("qemu+ssh://user:s3cr3tPW?x@kvm1/system", "qemu+ssh://***?x@kvm1/system"),  # a "?": no port, a password
        ("qemu+ssh://us%40er:s3cr3t%2FPW@kvm1/system", "qemu+ssh://***@kvm1/system"),  # percent-encoded
        ("QEMU+SSH://User:s3cr3tPW@kvm1/system", "QEMU+SSH://***@kvm1/system"),
        ("qemu+libssh2://user:s3cr3tPW@kvm1:2222/system", "qemu+libssh2://***@kvm1:2222/system"),
        (
            "qemu+ssh://kvm1/system?keyfile=/root/s3cr3tkey&no_verify=1",
            "qemu+ssh://kvm1/system?keyfile=***&no_verify=1",
        ),
        ("qemu+ssh://kvm1/system?password=s3cr3tPW", "qemu+ssh://kvm1/system?password=***"),
        ("qemu+ssh://kvm1/system?no_tty=1&api_token=s3cr3t;x=1", "qemu+ssh://kvm1/system?no_tty=1&api_token=***;x=1"),
        (
            "qemu+ssh://root:s3cr3tPW@kvm1/system?name=qemu+tcp://u2:s3cr3t2@kvm2/system",
            "qemu+ssh://***@kvm1/system?name=qemu+tcp://***@kvm2/system",
        ),
        ("qemu+ssh://root@kvm1/system", "qemu+ssh://***@kvm1/system"),  # user information, even with no password
    ],
)
def test_user_information_and_secret_query_values_are_hidden_in_every_form_a_uri_takes(uri, shown):
    assert redact_uri(uri) == shown


@pytest.mark.parametrize(
    "uri",
    [
        "qemu:///system",
        "qemu+unix:///system?socket=/run/libvirt/libvirt-sock-ro",
        "qemu+tcp://kvm1:16509/system",
        "qemu+tls://[2001:db8::1]:16514/system?pkipath=/etc/pki/kvm1",
        "test:///default",
    ],
)
def test_a_uri_without_credentials_is_shown_as_it_is(uri):
    assert redact_uri(uri) == uri


class LibvirtError(Exception):
    """Stands for libvirt.libvirtError: the text is libvirt's own, copied from real failed opens on this host."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def get_error_message(self) -> str:
        return self.text


@pytest.mark.parametrize(
    ("uri", "text"),
    [
        (
            "qemu+ssh://user:s3cr3tPW/x@kvm1.invalid/system",
            "internal error: Unable to parse URI qemu+ssh://user:s3cr3tPW/x@kvm1.invalid/system",
        ),
        (
            "qemu+ssh://user:s3cr3t@pw@kvm1.invalid/system",
            "internal error: Unable to parse URI qemu+ssh://user:s3cr3t@pw@kvm1.invalid/system",
        ),
        (
            "qemu+ssh://kvm1.invalid/system?keyfile=/root/s3cr3tkey",
            "Cannot recv data: Warning: Identity file /root/s3cr3tkey not accessible: No such file or directory.\n"
            "ssh: Could not resolve hostname kvm1.invalid: Name or service not known: Connection reset by peer",
        ),
        (  # ssh quoting the user information percent-decoded
            "qemu+ssh://us%40er:s3cr3t%2Fpw@kvm1.invalid/system",
            "Cannot recv data: us@er:s3cr3t/pw@kvm1.invalid: Permission denied (publickey,password).",
        ),
    ],
)
def test_libvirts_own_error_text_loses_the_connections_credentials_wherever_it_quotes_them(uri, text):
    message = error_message(LibvirtError(text), uri)
    assert SECRET not in message and "\n" not in message


def test_a_short_password_is_hidden_inside_a_uri_but_free_text_is_left_readable():
    text = "Unable to parse URI qemu+ssh://u:pw/x@kvm1/system: the pw is wrong"
    assert (
        redact(text, "qemu+ssh://u:pw/x@kvm1/system")
        == "Unable to parse URI qemu+ssh://***@kvm1/system: the pw is wrong"
    )


def test_doctors_command_to_rerun_as_telegraf_hides_the_credentials_in_its_arguments(tmp_path):
    argv = [KVM_TELEGRAF, "--uri", "qemu+ssh://root:s3cr3tPW/x@kvm1/system", "--uri=qemu+ssh:u:s3cr3tPW@kvm2/system"]
    command = own_command([*argv, "doctor"])
    assert SECRET not in command
    assert command.endswith("--uri 'qemu+ssh://***@kvm1/system' '--uri=qemu+ssh:***@kvm2/system' doctor")


# --- real failed opens, as the process and doctor report them -----------------------------------------------------

REAL_URIS = [
    "qemu+ssh://user:s3cr3tPW/x@kvm1.invalid/system",
    "qemu+ssh:user:s3cr3tPW@kvm1.invalid/system",
    "qemu+ssh://us%40er:s3cr3t%2Fpw@kvm1.invalid/system",
    "qemu+ssh://user:s3cr3t@pw@kvm1.invalid/system",
    "qemu+ssh://kvm1.invalid/system?keyfile=/root/s3cr3tkey&password=s3cr3tPW",
    "qemu+libssh2://user:s3cr3tPW@kvm1.invalid/system",
    "qemu+tcp://user:s3cr3tPW@127.0.0.1:1/system",
]


@pytest.mark.parametrize("uri", REAL_URIS)
def test_a_real_failed_open_shows_no_credential_in_the_error_line_nor_in_doctor(uri):
    pytest.importorskip("libvirt")
    once = subprocess.run([KVM_TELEGRAF, "--once", "--uri", uri], capture_output=True, text=True, timeout=60)
    assert once.returncode == 1 and once.stdout == ""
    (line,) = once.stderr.splitlines()
    assert line.startswith("E! cannot connect to ") and SECRET not in line, line
    doctor = subprocess.run([KVM_TELEGRAF, "--uri", uri, "doctor"], capture_output=True, text=True, timeout=60)
    assert doctor.returncode == 1 and doctor.stdout.startswith("FAIL  cannot connect to ")
    assert SECRET not in doctor.stdout + doctor.stderr, doctor.stdout


@pytest.mark.lab
def test_doctor_connected_over_a_uri_with_credentials_shows_none_of_them(lab):
    """qemu+unix takes user information and ignores it: the open succeeds, and root's rerun hint names the URI."""
    uri = "qemu+unix://root:s3cr3tPW@/system"
    done = subprocess.run([KVM_TELEGRAF, "--uri", uri, "--domain", lab[0], "doctor"], capture_output=True, text=True)
    assert "connected to qemu+unix://***@/system read-only" in done.stdout, done.stdout
    assert SECRET not in done.stdout + done.stderr, done.stdout


def test_a_run_on_a_uri_without_credentials_does_not_import_urllib_parse_and_its_half_mebibyte():
    assert {"urllib.parse", "ipaddress"} & modules_after_run(["--once", "--uri", "test:///default"]) == set()
