#!/usr/bin/env python3
"""Keys and JWTs for the gateway tests, made with PyJWT and `cryptography`:
an implementation independent of the Rust `jsonwebtoken` crate the host uses.

Usage: make_tokens.py OUT_DIR
Writes into OUT_DIR the public keys (rsa.pem, ec256.pem, ec384.pem, ed25519.pem),
jwks.json (RSA key `rsa-1`, EC key `ec-1`), and jwks-served.json and
jwks-rotated.json for a JWKS served over HTTP (before and after a rotation).
Prints one JSON object on stdout: {"secret": the HMAC secret, "tokens": {case: token}}.

Every token has iss "nimbus-test", aud "api", sub "alice", scope "read write",
roles ["editor"], iat now and exp in 10 minutes, unless the case says otherwise.
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

# 64 bytes: RFC 7518 asks HMAC keys to be at least the hash size, up to SHA-512.
SECRET = "gateway-test-secret-" + "0123456789abcdef" * 3
OTHER_SECRET = "not-the-gateway-secret-" + "0123456789abcdef" * 3
ISSUER = "nimbus-test"
AUDIENCE = "api"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_pem(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def main() -> None:
    out, now = sys.argv[1], int(time.time())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec256 = ec.generate_private_key(ec.SECP256R1())
    ec384 = ec.generate_private_key(ec.SECP384R1())
    ed = ed25519.Ed25519PrivateKey.generate()
    rotated = ec.generate_private_key(ec.SECP256R1())
    for name, key in [("rsa", rsa_key), ("ec256", ec256), ("ec384", ec384), ("ed25519", ed)]:
        with open(os.path.join(out, f"{name}.pem"), "wb") as f:
            f.write(public_pem(key))

    def jwk(key, kid, alg, algorithm):
        d = json.loads(algorithm.to_jwk(key.public_key()))
        d.update(kid=kid, alg=alg, use="sig")
        return d

    jwks = {"keys": [jwk(rsa_key, "rsa-1", "RS256", RSAAlgorithm), jwk(ec256, "ec-1", "ES256", ECAlgorithm)]}
    with open(os.path.join(out, "jwks.json"), "w") as f:
        json.dump(jwks, f)
    served = {"keys": [jwk(ec256, "ec-1", "ES256", ECAlgorithm)]}
    with open(os.path.join(out, "jwks-served.json"), "w") as f:
        json.dump(served, f)
    served["keys"].append(jwk(rotated, "ec-2", "ES256", ECAlgorithm))
    with open(os.path.join(out, "jwks-rotated.json"), "w") as f:
        json.dump(served, f)

    def claims(**changes):
        c = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "scope": "read write",
             "roles": ["editor"], "iat": now, "exp": now + 600, "name": "Zoë"}
        for k, v in changes.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    def sign(key, alg, kid=None, **changes):
        headers = {"kid": kid} if kid else None
        return jwt.encode(claims(**changes), key, algorithm=alg, headers=headers)

    def hs256_with_raw_key(key: bytes, kid=None, **changes) -> str:
        # PyJWT refuses a PEM as an HMAC secret (rightly); the attack does not.
        head = {"alg": "HS256", "typ": "JWT"}
        if kid:
            head["kid"] = kid
        header = b64url(json.dumps(head).encode())
        payload = b64url(json.dumps(claims(**changes)).encode())
        mac = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{b64url(mac)}"

    tokens = {
        "hs256": sign(SECRET, "HS256"),
        "hs384": sign(SECRET, "HS384"),
        "hs512": sign(SECRET, "HS512"),
        "rs256": sign(rsa_key, "RS256"),
        "rs384": sign(rsa_key, "RS384"),
        "rs512": sign(rsa_key, "RS512"),
        "ps256": sign(rsa_key, "PS256"),
        "es256": sign(ec256, "ES256"),
        "es384": sign(ec384, "ES384"),
        "eddsa": sign(ed, "EdDSA"),
        "jwks_rsa": sign(rsa_key, "RS256", kid="rsa-1"),
        "jwks_ec": sign(ec256, "ES256", kid="ec-1"),
        "jwks_unknown_kid": sign(rsa_key, "RS256", kid="rsa-9"),
        "served_ec1": sign(ec256, "ES256", kid="ec-1"),
        "served_ec2": sign(rotated, "ES256", kid="ec-2"),
        "expired": sign(SECRET, "HS256", iat=now - 3600, exp=now - 120),
        "expired_within_leeway": sign(SECRET, "HS256", exp=now - 5),
        "not_yet_valid": sign(SECRET, "HS256", nbf=now + 300),
        "wrong_issuer": sign(SECRET, "HS256", iss="someone-else"),
        "wrong_audience": sign(SECRET, "HS256", aud="other-api"),
        "no_exp": sign(SECRET, "HS256", exp=None),
        "bad_signature": sign(OTHER_SECRET, "HS256"),
        "alg_none": jwt.encode(claims(), None, algorithm="none"),
        "hmac_with_rsa_public_key": hs256_with_raw_key(public_pem(rsa_key)),
        "hmac_with_rsa_kid": hs256_with_raw_key(public_pem(rsa_key), kid="rsa-1"),
        "no_iss": sign(SECRET, "HS256", iss=None),
        "no_aud": sign(SECRET, "HS256", aud=None),
        "aud_not_a_string": sign(SECRET, "HS256", aud=42),
        "hs256_read_only": sign(SECRET, "HS256", scope="read"),
        "hs256_admin": sign(SECRET, "HS256", roles=["admin"], sub="root"),
        "hs256_bob": sign(SECRET, "HS256", sub="bob"),
    }
    json.dump({"secret": SECRET, "tokens": tokens}, sys.stdout)


if __name__ == "__main__":
    main()
