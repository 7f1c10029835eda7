//! The key-backend conformance suite: what every key backend (and its anchor) must do, checked the same way
//! on the simulated token, SoftHSM and the TPM.

use std::sync::Arc;

use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use vault_daemon::keys::OpenedKeys;
use vault_daemon::keys::anchor::Anchor;
use vault_daemon::keys::{KeyError, KeyRef, KeyUse};

/// Opens the backend under test with its anchor (again, to check that keys survive a reopen).
pub type Opener = dyn Fn() -> OpenedKeys;

fn check(condition: bool, what: &str) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(what.to_owned())
    }
}

fn ok<T>(result: Result<T, KeyError>, what: &str) -> Result<T, String> {
    result.map_err(|e| format!("{what}: {e}"))
}

/// Runs every check; returns the first failure.
pub fn run(open: &Opener) -> Result<(), String> {
    let backend = open().backend;
    ok(backend.self_test(), "self-test")?;
    let kek = ok(
        backend.create_key(KeyUse::Wrap, "conformance/kek"),
        "create KEK",
    )?;
    let kek2 = ok(
        backend.create_key(KeyUse::Wrap, "conformance/kek2"),
        "create second KEK",
    )?;
    let mac = ok(
        backend.create_key(KeyUse::Mac, "conformance/mac"),
        "create MAC key",
    )?;
    let mac2 = ok(
        backend.create_key(KeyUse::Mac, "conformance/mac2"),
        "create second MAC key",
    )?;
    let signer = ok(
        backend.create_key(KeyUse::Sign, "conformance/sign"),
        "create signing key",
    )?;

    // Wrap/unwrap round trip, bound to the associated data and every byte.
    let dek = [7u8; 32];
    let wrapped = ok(backend.wrap(&kek, &dek, b"aad-1"), "wrap")?;
    check(
        !wrapped.windows(32).any(|w| w == dek),
        "wrapped DEK contains the DEK in clear",
    )?;
    let unwrapped = ok(backend.unwrap(&kek, &wrapped, b"aad-1"), "unwrap")?;
    check(unwrapped.as_slice() == dek, "unwrap returned another DEK")?;
    let other_aad = backend.unwrap(&kek, &wrapped, b"aad-2").map(|_| ());
    check(
        other_aad == Err(KeyError::Integrity),
        &format!("unwrap with other associated data must fail with Integrity, got {other_aad:?}"),
    )?;
    for position in [0, wrapped.len() / 2, wrapped.len() - 1] {
        let mut flipped = wrapped.clone();
        flipped[position] ^= 0x01;
        check(
            backend.unwrap(&kek, &flipped, b"aad-1") == Err(KeyError::Integrity),
            &format!("unwrap with byte {position} flipped must fail with Integrity"),
        )?;
    }
    check(
        backend.unwrap(&kek2, &wrapped, b"aad-1") == Err(KeyError::Integrity),
        "unwrap under another KEK must fail with Integrity",
    )?;
    check(
        ok(backend.wrap(&kek, &dek, b"aad-1"), "wrap again")? != wrapped,
        "two wraps of one DEK must differ (fresh IV)",
    )?;

    // HMAC: deterministic per key, different across keys and inputs.
    let a = ok(backend.mac(&mac, b"123456789018"), "mac")?;
    check(
        a == ok(backend.mac(&mac, b"123456789018"), "mac again")?,
        "HMAC is not deterministic",
    )?;
    check(
        a != ok(backend.mac(&mac2, b"123456789018"), "mac other key")?,
        "HMAC equal across keys",
    )?;
    check(
        a != ok(backend.mac(&mac, b"983205673214"), "mac other input")?,
        "HMAC equal across inputs",
    )?;
    let expected_len = ring::hmac::HMAC_SHA256.digest_algorithm().output_len();
    check(a.len() == expected_len, "HMAC length")?;

    // Signature verifies with the exported public key, with ring.
    let public = ok(backend.public_key(&signer), "public key")?;
    let signature = ok(backend.sign(&signer, b"checkpoint 42"), "sign")?;
    let verifier = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public);
    check(
        verifier.verify(b"checkpoint 42", &signature).is_ok(),
        "signature does not verify",
    )?;
    check(
        verifier.verify(b"checkpoint 43", &signature).is_err(),
        "signature verifies another message",
    )?;

    // Many concurrent tasks.
    std::thread::scope(|scope| -> Result<(), String> {
        let handles: Vec<_> = (0..8u8)
            .map(|t| {
                let backend = Arc::clone(&backend);
                let (kek, mac) = (kek.clone(), mac.clone());
                scope.spawn(move || -> Result<(), String> {
                    for i in 0..50u8 {
                        let dek = [t ^ i; 32];
                        let aad = [t, i];
                        let wrapped = ok(backend.wrap(&kek, &dek, &aad), "concurrent wrap")?;
                        let back = ok(backend.unwrap(&kek, &wrapped, &aad), "concurrent unwrap")?;
                        check(back.as_slice() == dek, "concurrent round trip")?;
                        ok(backend.mac(&mac, &aad), "concurrent mac")?;
                    }
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            handle
                .join()
                .map_err(|_| "a concurrent task panicked".to_owned())??;
        }
        Ok(())
    })?;

    // Keys survive a reopen of the backend.
    drop(backend);
    let backend = open().backend;
    let again = ok(
        backend.unwrap(&kek, &wrapped, b"aad-1"),
        "unwrap after reopen",
    )?;
    check(
        again.as_slice() == dek,
        "unwrap after reopen returned another DEK",
    )?;
    check(
        a == ok(backend.mac(&mac, b"123456789018"), "mac after reopen")?,
        "HMAC changed across reopen",
    )?;
    let signature = ok(backend.sign(&signer, b"after reopen"), "sign after reopen")?;
    check(
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public)
            .verify(b"after reopen", &signature)
            .is_ok(),
        "signature after reopen does not verify with the exported key",
    )?;

    // A destroyed key can no longer unwrap, here or after a reopen.
    ok(backend.destroy_key(&kek), "destroy")?;
    check(
        backend.unwrap(&kek, &wrapped, b"aad-1").is_err(),
        "a destroyed KEK still unwraps",
    )?;
    check(
        backend.unwrap(&kek, &wrapped, b"aad-1") == Err(KeyError::Destroyed),
        "a destroyed KEK must report Destroyed",
    )?;
    drop(backend);
    let backend = open().backend;
    check(
        backend.unwrap(&kek, &wrapped, b"aad-1") == Err(KeyError::Destroyed),
        "a destroyed KEK must stay destroyed after a reopen",
    )?;
    ok(
        backend.unwrap(
            &kek2,
            &ok(backend.wrap(&kek2, &dek, b"x"), "wrap kek2")?,
            b"x",
        ),
        "other keys still work",
    )?;
    let _: &KeyRef = &kek2;
    anchor(open)
}

/// The freshness anchor: none at first, then what was written, across a reopen; every write
/// raises the counter, and a stale write never lowers it.
fn anchor(open: &Opener) -> Result<(), String> {
    let backend = open().anchor;
    check(
        ok(backend.read_anchor(), "read anchor")?.is_none(),
        "a new backend holds an anchor",
    )?;
    ok(
        backend.write_anchor(&Anchor::next(None, 1, [1; 32])),
        "write anchor",
    )?;
    let first = ok(backend.read_anchor(), "read anchor")?.ok_or("anchor not kept")?;
    check(
        (first.checkpoint, first.hash) == (1, [1; 32]),
        "anchor reads back otherwise",
    )?;
    ok(
        backend.write_anchor(&Anchor::next(Some(&first), 2, [2; 32])),
        "advance anchor",
    )?;
    drop(backend);
    let backend = open().anchor;
    let second = ok(backend.read_anchor(), "read anchor after reopen")?.ok_or("anchor lost")?;
    check(
        (second.checkpoint, second.hash) == (2, [2; 32]) && second.counter > first.counter,
        "advanced anchor not kept across a reopen, or its counter did not rise",
    )?;
    // A writer that still holds the first anchor: refused, or its counter raised anyway.
    let stale = backend.write_anchor(&Anchor::next(Some(&first), 3, [3; 32]));
    let after = ok(backend.read_anchor(), "read anchor")?.ok_or("anchor lost")?;
    check(
        stale.is_err() && after == second || stale.is_ok() && after.counter > second.counter,
        "a stale anchor write lowered or kept the counter",
    )?;
    Ok(())
}
