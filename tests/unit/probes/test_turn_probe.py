"""The TURN probe's message encoding against the RFC 5769 STUN test vectors and RFC 8489 rules.

The vectors are the published bytes of RFC 5769 sections 2.1-2.4; if our HMAC, CRC or XOR
addressing were wrong, the probe would report a healthy coturn as broken (or the reverse).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from visio_infra.probes import turn_probe as tp

# RFC 5769 2.1: short-term credential request (padding bytes are spaces in the RFC).
SAMPLE_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae"
    "802200105354554e20746573742063"
    "6c69656e74"
    "002400046e0001ff"
    "80290008932ff9b151263b36"
    "000600096576746a3a68367659202020"
    "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"
    "80280004e57a3bcf"
)
SHORT_TERM_PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"

# RFC 5769 2.2: IPv4 success response, mapped address 192.0.2.1:32853.
SAMPLE_IPV4_RESPONSE = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000080001a147e112a643"
    "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7"
    "80280004c07d4c96"
)

# RFC 5769 2.3: IPv6 success response, mapped address [2001:db8:1234:5678:11:2233:4455:6677]:32853.
SAMPLE_IPV6_RESPONSE = bytes.fromhex(
    "010100482112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9"
    "00080014a382954e4be67bf11784c97c8292c275bfe3ed41"
    "80280004c8fb0b4c"
)

# RFC 5769 2.4: long-term credential request (username "マトリックス", realm example.org,
# password "TheMatrIX" after SASLprep).
SAMPLE_LONG_TERM_REQUEST = bytes.fromhex(
    "000100602112a44278ad3433c6ad72c029da412e"
    "00060012e3839ee38388e383aae38383e382afe382b90000"
    "0015001c662f2f3439396b39353464364f4c33346f4c39465354767936347341"
    "0014000b6578616d706c652e6f726700"
    "00080014f67024656dd64a3e02b8e0712e85c9a28ca89666"
)


def test_long_term_vector_is_transcribed_correctly():
    # Guard on the fixture itself: header says 0x60 body bytes, 116 in all.
    assert len(SAMPLE_LONG_TERM_REQUEST) == 116
    assert SAMPLE_LONG_TERM_REQUEST[8:20] == bytes.fromhex("78ad3433c6ad72c029da412e")


def test_message_type_interleaving_round_trips():
    assert tp.message_type(tp.BINDING, tp.REQUEST) == 0x0001
    assert tp.message_type(tp.BINDING, tp.SUCCESS) == 0x0101
    assert tp.message_type(tp.ALLOCATE, tp.REQUEST) == 0x0003
    assert tp.message_type(tp.ALLOCATE, tp.ERROR) == 0x0113
    assert tp.message_type(tp.CREATE_PERMISSION, tp.SUCCESS) == 0x0108
    for method in (tp.BINDING, tp.ALLOCATE, tp.REFRESH, tp.CREATE_PERMISSION, 0xFFF):
        for cls in (tp.REQUEST, tp.INDICATION, tp.SUCCESS, tp.ERROR):
            assert tp.split_type(tp.message_type(method, cls)) == (method, cls)


def test_decode_sample_request():
    message = tp.decode(SAMPLE_REQUEST)
    assert (message.method, message.cls) == (tp.BINDING, tp.REQUEST)
    assert message.transaction_id == bytes.fromhex("b7e7a701bc34d686fa87dfae")
    assert message.get(tp.SOFTWARE) == b"STUN test client"
    assert message.get(tp.USERNAME) == b"evtj:h6vY"
    assert [kind for kind, _ in message.attributes] == [
        tp.SOFTWARE, 0x0024, 0x8029, tp.USERNAME, tp.MESSAGE_INTEGRITY, tp.FINGERPRINT,
    ]


def test_sample_request_integrity_and_fingerprint():
    assert tp.verify_integrity(SAMPLE_REQUEST, SHORT_TERM_PASSWORD)
    assert not tp.verify_integrity(SAMPLE_REQUEST, b"wrong password")
    assert tp.verify_fingerprint(SAMPLE_REQUEST)


def test_encode_reproduces_sample_request_bytes():
    message = tp.decode(SAMPLE_REQUEST)
    plain = [(k, v) for k, v in message.attributes if k not in (tp.MESSAGE_INTEGRITY, tp.FINGERPRINT)]
    encoded = tp.encode(
        message.method, message.cls, message.transaction_id, plain,
        integrity_key=SHORT_TERM_PASSWORD, fingerprint=True, padding=b" ",
    )
    assert encoded == SAMPLE_REQUEST


@pytest.mark.parametrize(
    ("vector", "address"),
    [
        (SAMPLE_IPV4_RESPONSE, ("192.0.2.1", 32853)),
        (SAMPLE_IPV6_RESPONSE, ("2001:db8:1234:5678:11:2233:4455:6677", 32853)),
    ],
)
def test_responses_decode_xor_mapped_address(vector, address):
    message = tp.decode(vector)
    assert (message.method, message.cls) == (tp.BINDING, tp.SUCCESS)
    assert message.get(tp.SOFTWARE) == b"test vector"
    xma = message.get(tp.XOR_MAPPED_ADDRESS)
    assert xma is not None
    assert tp.decode_xor_address(xma, message.transaction_id) == address
    assert tp.verify_integrity(vector, SHORT_TERM_PASSWORD)
    assert tp.verify_fingerprint(vector)


@pytest.mark.parametrize(
    "vector", [SAMPLE_IPV4_RESPONSE, SAMPLE_IPV6_RESPONSE], ids=["ipv4", "ipv6"]
)
def test_encode_reproduces_response_bytes(vector):
    message = tp.decode(vector)
    ip, port = tp.decode_xor_address(message.get(tp.XOR_MAPPED_ADDRESS), message.transaction_id)
    attrs = [
        (tp.SOFTWARE, b"test vector"),
        (tp.XOR_MAPPED_ADDRESS, tp.encode_xor_address(ip, port, message.transaction_id)),
    ]
    encoded = tp.encode(
        tp.BINDING, tp.SUCCESS, message.transaction_id, attrs,
        integrity_key=SHORT_TERM_PASSWORD, fingerprint=True, padding=b" ",
    )
    assert encoded == vector


def test_long_term_credential_vector():
    username = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
    key = tp.long_term_key(username, "example.org", "TheMatrIX")
    assert tp.verify_integrity(SAMPLE_LONG_TERM_REQUEST, key)
    assert not tp.verify_integrity(SAMPLE_LONG_TERM_REQUEST, tp.long_term_key(username, "example.org", "x"))
    message = tp.decode(SAMPLE_LONG_TERM_REQUEST)
    assert message.get(tp.USERNAME) == username.encode()
    assert message.get(tp.NONCE) == b"f//499k954d6OL34oL9FSTvy64sA"
    assert message.get(tp.REALM) == b"example.org"
    # And our encoder produces the same bytes from the same inputs.
    attrs = [(k, v) for k, v in message.attributes if k != tp.MESSAGE_INTEGRITY]
    assert tp.encode(tp.BINDING, tp.REQUEST, message.transaction_id, attrs, integrity_key=key) == (
        SAMPLE_LONG_TERM_REQUEST
    )


def test_tampered_message_fails_integrity_and_fingerprint():
    tampered = bytearray(SAMPLE_REQUEST)
    tampered[24] ^= 0x01  # one bit of the SOFTWARE value
    assert not tp.verify_integrity(bytes(tampered), SHORT_TERM_PASSWORD)
    assert not tp.verify_fingerprint(bytes(tampered))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (SAMPLE_REQUEST[:19], "shorter than a STUN header"),
        (b"\x00\x01\x00\x00\x21\x12\xa4\x43" + bytes(12), "magic cookie"),
        (SAMPLE_REQUEST[:-4], "does not match"),
        (b"\xc0" + SAMPLE_REQUEST[1:], "first two bits"),
        (bytes.fromhex("000100082112a442") + bytes(12) + bytes.fromhex("0006004000000000"), "runs past"),
    ],
)
def test_malformed_messages_are_rejected(data, problem):
    with pytest.raises(tp.StunError, match=problem):
        tp.decode(data)


def test_error_code_round_trip():
    for code, reason in [(401, "Unauthorized"), (403, "Forbidden IP"), (438, "Stale Nonce")]:
        assert tp.decode_error_code(tp.encode_error_code(code, reason)) == (code, reason)


def test_xor_address_round_trip_ipv4_and_ipv6():
    tid = bytes(range(12))
    for ip, port in [("10.77.0.74", 3478), ("169.254.169.254", 80), ("fd00::1", 49152)]:
        assert tp.decode_xor_address(tp.encode_xor_address(ip, port, tid), tid) == (ip, port)


def test_rest_api_credentials_follow_coturn_and_livekit_scheme():
    secret = "s3cr3t-shared-between-livekit-and-coturn"
    username, password = tp.rest_api_credentials(secret, ttl=600, user_id="probe", now=1_700_000_000)
    assert username == "1700000600:probe"
    expected = base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()
    assert password == expected
    assert tp.rest_api_credentials("other", ttl=600, user_id="probe", now=1_700_000_000)[1] != password


def test_check_server_reports_an_unreachable_listener_as_failed():
    # Nothing listens on this loopback UDP port: the check must fail, never raise or pass.
    report = tp.check_server(
        "127.0.0.1", 9, "udp", "secret", allowed_peers=[], denied_peers=["127.0.0.1"], timeout=0.5
    )
    assert not report.passed
    assert report.checks[0].name == "allocation with shared-secret credentials"
    assert not report.checks[0].passed
