//! Runs the key-backend conformance suite in a process of its own (a PKCS#11 library reads its
//! configuration from the environment once per process):
//!
//! `backend-conformance pkcs11 MODULE TOKEN_LABEL PIN_FILE` — exits 0 when every check passes.
//! `backend-conformance pkcs11-extract MODULE TOKEN_LABEL PIN_FILE` — creates the locker's keys
//! through the backend, then tries, as any PKCS#11 application could, to read or wrap them out
//! of the token; exits 0 when every attempt is refused.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use secrecy::SecretString;
use vault_daemon::keys::OpenedKeys;
use vault_daemon::keys::pkcs11::{Pkcs11Backend, Pkcs11Settings};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, module, label, pin_file] = args.as_slice() else {
        eprintln!("usage: backend-conformance pkcs11 MODULE TOKEN_LABEL PIN_FILE");
        return ExitCode::from(2);
    };
    if kind != "pkcs11" && kind != "pkcs11-extract" {
        eprintln!("unknown mode {kind}");
        return ExitCode::from(2);
    }
    let pin = match std::fs::read_to_string(pin_file) {
        Ok(pin) => SecretString::from(pin.trim().to_owned()),
        Err(e) => {
            eprintln!("cannot read {pin_file}: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = Pkcs11Settings {
        module: PathBuf::from(module),
        token_label: label.clone(),
        pin,
        max_sessions: 8,
    };
    let settings_copy = settings.clone();
    let open = move || {
        OpenedKeys::self_anchored(
            Pkcs11Backend::open(settings.clone()).expect("open PKCS#11 backend"),
        )
    };
    let outcome = if kind == "pkcs11" {
        vault_tests::conformance::run(&open)
    } else {
        extraction::probe(&open, &settings_copy)
    };
    match outcome {
        Ok(()) => {
            println!("conformance: all checks passed");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("conformance failure: {failure}");
            ExitCode::FAILURE
        }
    }
}

mod extraction {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::error::{Error, RvError};
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::{Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass};
    use cryptoki::session::UserType;
    use vault_daemon::keys::KeyUse;
    use vault_daemon::keys::OpenedKeys;
    use vault_daemon::keys::pkcs11::Pkcs11Settings;

    /// Creates a KEK, a MAC key and a signing key, then checks from a plain PKCS#11 session
    /// that none can be read (CKA_VALUE sensitive) or wrapped out (C_WrapKey refused).
    pub fn probe(open: &dyn Fn() -> OpenedKeys, settings: &Pkcs11Settings) -> Result<(), String> {
        {
            let backend = open().backend;
            for (key_use, label) in [
                (KeyUse::Wrap, "probe/kek"),
                (KeyUse::Mac, "probe/mac"),
                (KeyUse::Sign, "probe/sign"),
            ] {
                backend
                    .create_key(key_use, label)
                    .map_err(|e| format!("create {label}: {e}"))?;
            }
        } // the backend's connection is finalised here
        let context = Pkcs11::new(&settings.module).map_err(|e| e.to_string())?;
        context
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(|e| e.to_string())?;
        let slot = context
            .get_slots_with_token()
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|s| {
                context
                    .get_token_info(*s)
                    .is_ok_and(|i| i.label().trim_end() == settings.token_label)
            })
            .ok_or("token not found")?;
        let session = context.open_rw_session(slot).map_err(|e| e.to_string())?;
        session
            .login(UserType::User, Some(&settings.pin))
            .map_err(|e| e.to_string())?;
        // A wrapping key of the attacker's own, allowed to wrap anything extractable.
        let wrapper = session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Token(false),
                    Attribute::ValueLen(32.into()),
                    Attribute::Wrap(true),
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                ],
            )
            .map_err(|e| e.to_string())?;
        let mut checked = 0;
        for class in [ObjectClass::SECRET_KEY, ObjectClass::PRIVATE_KEY] {
            for object in session
                .find_objects(&[Attribute::Class(class), Attribute::Token(true)])
                .map_err(|e| e.to_string())?
            {
                let info = session
                    .get_attribute_info(object, &[AttributeType::Value])
                    .map_err(|e| e.to_string())?;
                if !matches!(info.as_slice(), [AttributeInfo::Sensitive]) {
                    return Err(format!(
                        "CKA_VALUE of a {class} is not reported sensitive: {info:?}"
                    ));
                }
                let flags = session
                    .get_attributes(
                        object,
                        &[
                            AttributeType::Extractable,
                            AttributeType::NeverExtractable,
                            AttributeType::Sensitive,
                        ],
                    )
                    .map_err(|e| e.to_string())?;
                for flag in &flags {
                    match flag {
                        Attribute::Extractable(false)
                        | Attribute::NeverExtractable(true)
                        | Attribute::Sensitive(true) => {}
                        other => return Err(format!("a {class} has {other:?}")),
                    }
                }
                match session.wrap_key(&Mechanism::AesKeyWrapPad, wrapper, object) {
                    Err(Error::Pkcs11(RvError::KeyUnextractable | RvError::KeyNotWrappable, _)) => {
                    }
                    Ok(_) => return Err(format!("C_WrapKey exported a {class}")),
                    Err(other) => {
                        return Err(format!(
                            "C_WrapKey of a {class} failed unexpectedly: {other}"
                        ));
                    }
                }
                checked += 1;
            }
        }
        if checked < 3 {
            return Err(format!("only {checked} keys found in the token"));
        }
        println!("extraction probe: {checked} keys, none readable or wrappable");
        Ok(())
    }
}
