//! The simulated token: keys by id, operations on them, and the faults applied to each.

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use zeroize::Zeroizing;

use crate::fault::{Fault, FaultInjector};
use crate::keystore::{self, KeyFile, StoredKey};
use crate::kinds::{KeyKind, SimError};

/// Name of the key file in the token directory.
pub const KEY_FILE_NAME: &str = "hsm-sim.keys.json";

/// How to open a [`SimToken`].
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// Read the fault control file ([`crate::FAULT_FILE_NAME`]) before every operation.
    pub fault_control_file: bool,
    /// Several processes use the token directory (dev daemons of one cluster): changes are
    /// made under a file lock on the newest key file, and each operation first takes in what
    /// another process changed (a `stat` per operation).
    pub shared: bool,
}

/// A key ready for use: its ring object, built once at load.
enum LiveKey {
    Aead(Box<LessSafeKey>),
    Hmac(hmac::Key),
    Ecdsa(Box<EcdsaKeyPair>),
    Destroyed(KeyKind),
}

impl LiveKey {
    fn kind(&self) -> KeyKind {
        match self {
            LiveKey::Aead(_) => KeyKind::Aes256Gcm,
            LiveKey::Hmac(_) => KeyKind::HmacSha256,
            LiveKey::Ecdsa(_) => KeyKind::EcdsaP256,
            LiveKey::Destroyed(kind) => *kind,
        }
    }
}

struct State {
    file: KeyFile,
    live: HashMap<String, LiveKey>,
    /// What the key file looked like when it was loaded (shared tokens).
    seen: Option<FileStamp>,
}

/// Enough of a file's metadata to tell it was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    modified_ns: i128,
    len: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        inode: meta.ino(),
        modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        len: meta.len(),
    })
}

/// A simulated token rooted in a directory.
pub struct SimToken {
    key_file: PathBuf,
    lock_file: PathBuf,
    shared: bool,
    state: RwLock<State>,
    faults: FaultInjector,
    rng: SystemRandom,
}

impl std::fmt::Debug for SimToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimToken")
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

const NONCE_LEN: usize = 12;

impl SimToken {
    /// Opens (or creates) the token whose key file lives in `dir`.
    pub fn open(dir: &Path, options: SimOptions) -> Result<SimToken, SimError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let key_file = dir.join(KEY_FILE_NAME);
        let seen = stamp(&key_file);
        let file = keystore::load(&key_file)?;
        let rng = SystemRandom::new();
        let live = build_all(&file, &rng)?;
        Ok(SimToken {
            key_file,
            lock_file: dir.join("hsm-sim.lock"),
            shared: options.shared,
            state: RwLock::new(State { file, live, seen }),
            faults: FaultInjector::new(dir, options.fault_control_file),
            rng,
        })
    }

    /// Always false: the keys are in a file. Callers must not treat this as a hardware token.
    pub fn is_secure(&self) -> bool {
        false
    }

    /// Sets the programmatic fault (it overrides the control file while not [`Fault::None`]).
    pub fn set_fault(&self, fault: Fault) {
        self.faults.set(fault);
    }

    /// Creates a key of `kind` and returns its id. `label` is kept for humans only.
    pub fn create_key(&self, kind: KeyKind, label: &str) -> Result<String, SimError> {
        self.apply_fault()?;
        let material = Zeroizing::new(match kind {
            KeyKind::Aes256Gcm | KeyKind::HmacSha256 => self.random_bytes(32)?,
            KeyKind::EcdsaP256 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &self.rng)
                    .map_err(|_| SimError::Crypto)?
                    .as_ref()
                    .to_vec()
            }
        });
        let id = format!("{}-{}", sanitize(label), hex::encode(self.random_bytes(8)?));
        let stored = StoredKey {
            kind,
            label: label.to_owned(),
            material_hex: Some(Zeroizing::new(hex::encode(&material))),
        };
        let live = build_live_key(&id, &stored, &self.rng)?;
        let _lock = self.lock_for_change()?;
        self.refresh()?;
        let mut state = self.write_state();
        state.file.keys.insert(id.clone(), stored);
        if let Err(e) = keystore::save(&self.key_file, &state.file) {
            state.file.keys.remove(&id);
            return Err(e);
        }
        state.live.insert(id.clone(), live);
        state.seen = stamp(&self.key_file);
        Ok(id)
    }

    /// Destroys a key: its material is erased from memory and from the key file.
    pub fn destroy_key(&self, id: &str) -> Result<(), SimError> {
        self.apply_fault()?;
        let _lock = self.lock_for_change()?;
        self.refresh()?;
        let mut state = self.write_state();
        let kind = match state.file.keys.get_mut(id) {
            Some(stored) => {
                stored.material_hex = None;
                stored.kind
            }
            None => return Err(SimError::KeyNotFound(id.to_owned())),
        };
        keystore::save(&self.key_file, &state.file)?;
        state.live.insert(id.to_owned(), LiveKey::Destroyed(kind));
        state.seen = stamp(&self.key_file);
        Ok(())
    }

    /// Encrypts `plaintext` (a data key) under key `id` with associated data `aad`.
    /// The result is `nonce || ciphertext || tag`.
    pub fn wrap(&self, id: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SimError> {
        self.apply_fault()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SimError::Crypto)?;
        let state = self.read_state();
        let key = aead_key(&state, id)?;
        let mut buffer = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buffer,
        )
        .map_err(|_| SimError::Crypto)?;
        let mut out = Vec::with_capacity(NONCE_LEN + buffer.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buffer);
        Ok(out)
    }

    /// Reverses [`SimToken::wrap`]; fails with [`SimError::Authentication`] on any mismatch.
    pub fn unwrap(
        &self,
        id: &str,
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SimError> {
        self.apply_fault()?;
        if wrapped.len() < NONCE_LEN + aead::AES_256_GCM.tag_len() {
            return Err(SimError::Authentication);
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SimError::Crypto)?;
        let state = self.read_state();
        let key = aead_key(&state, id)?;
        let mut buffer = Zeroizing::new(sealed.to_vec());
        let plain_len = key
            .open_in_place(nonce, Aad::from(aad), &mut buffer)
            .map_err(|_| SimError::Authentication)?
            .len();
        buffer.truncate(plain_len);
        Ok(buffer)
    }

    /// HMAC-SHA256 of `data` under key `id`.
    pub fn hmac(&self, id: &str, data: &[u8]) -> Result<[u8; 32], SimError> {
        self.apply_fault()?;
        let state = self.read_state();
        match live_key(&state, id, KeyKind::HmacSha256)? {
            LiveKey::Hmac(key) => {
                let tag = hmac::sign(key, data);
                let mut out = [0u8; 32];
                out.copy_from_slice(tag.as_ref());
                Ok(out)
            }
            _ => Err(SimError::Crypto),
        }
    }

    /// ECDSA P-256 / SHA-256 signature of `message` under key `id`, as fixed-size r ‖ s
    /// (64 bytes), the form PKCS#11 `CKM_ECDSA` produces.
    pub fn sign(&self, id: &str, message: &[u8]) -> Result<Vec<u8>, SimError> {
        self.apply_fault()?;
        let state = self.read_state();
        match live_key(&state, id, KeyKind::EcdsaP256)? {
            LiveKey::Ecdsa(pair) => Ok(pair
                .sign(&self.rng, message)
                .map_err(|_| SimError::Crypto)?
                .as_ref()
                .to_vec()),
            _ => Err(SimError::Crypto),
        }
    }

    /// The public key of signing key `id`, as an uncompressed SEC1 point.
    pub fn public_key(&self, id: &str) -> Result<Vec<u8>, SimError> {
        self.apply_fault()?;
        let state = self.read_state();
        match live_key(&state, id, KeyKind::EcdsaP256)? {
            LiveKey::Ecdsa(pair) => Ok(pair.public_key().as_ref().to_vec()),
            _ => Err(SimError::Crypto),
        }
    }

    /// Checks the token answers and its random generator works.
    pub fn self_test(&self) -> Result<(), SimError> {
        self.apply_fault()?;
        self.random_bytes(16).map(drop)
    }

    /// On a shared token: takes in the key file if another process replaced it.
    fn refresh(&self) -> Result<(), SimError> {
        if !self.shared {
            return Ok(());
        }
        let now = stamp(&self.key_file);
        if self.read_state().seen == now {
            return Ok(());
        }
        let file = keystore::load(&self.key_file)?;
        let live = build_all(&file, &self.rng)?;
        let mut state = self.write_state();
        *state = State {
            file,
            live,
            seen: now,
        };
        Ok(())
    }

    /// On a shared token: an exclusive lock for a read-modify-write of the key file.
    fn lock_for_change(&self) -> Result<Option<std::fs::File>, SimError> {
        if !self.shared {
            return Ok(None);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_file)?;
        file.lock()?;
        Ok(Some(file))
    }

    fn apply_fault(&self) -> Result<(), SimError> {
        self.refresh()?;
        match self.faults.current() {
            Fault::None => Ok(()),
            Fault::Unavailable => Err(SimError::Unavailable),
            Fault::Fail => Err(SimError::Injected),
            Fault::Delay(delay) => {
                std::thread::sleep(delay);
                Ok(())
            }
        }
    }

    fn random_bytes(&self, len: usize) -> Result<Vec<u8>, SimError> {
        let mut out = vec![0u8; len];
        self.rng.fill(&mut out).map_err(|_| SimError::Crypto)?;
        Ok(out)
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn build_all(file: &KeyFile, rng: &SystemRandom) -> Result<HashMap<String, LiveKey>, SimError> {
    file.keys
        .iter()
        .map(|(id, stored)| Ok((id.clone(), build_live_key(id, stored, rng)?)))
        .collect()
}

fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(48)
        .collect()
}

fn live_key<'s>(state: &'s State, id: &str, expected: KeyKind) -> Result<&'s LiveKey, SimError> {
    let key = state
        .live
        .get(id)
        .ok_or_else(|| SimError::KeyNotFound(id.to_owned()))?;
    if let LiveKey::Destroyed(_) = key {
        return Err(SimError::KeyDestroyed(id.to_owned()));
    }
    if key.kind() != expected {
        return Err(SimError::WrongKind {
            id: id.to_owned(),
            expected,
            actual: key.kind(),
        });
    }
    Ok(key)
}

fn aead_key<'s>(state: &'s State, id: &str) -> Result<&'s LessSafeKey, SimError> {
    match live_key(state, id, KeyKind::Aes256Gcm)? {
        LiveKey::Aead(key) => Ok(key),
        _ => Err(SimError::Crypto),
    }
}

fn build_live_key(id: &str, stored: &StoredKey, rng: &SystemRandom) -> Result<LiveKey, SimError> {
    let Some(material_hex) = &stored.material_hex else {
        return Ok(LiveKey::Destroyed(stored.kind));
    };
    let material = Zeroizing::new(
        hex::decode(material_hex.as_bytes())
            .map_err(|_| SimError::Corrupt(format!("key {id}: material is not hex")))?,
    );
    let corrupt = || SimError::Corrupt(format!("key {id}: material does not fit its kind"));
    Ok(match stored.kind {
        KeyKind::Aes256Gcm => LiveKey::Aead(Box::new(LessSafeKey::new(
            UnboundKey::new(&aead::AES_256_GCM, &material).map_err(|_| corrupt())?,
        ))),
        KeyKind::HmacSha256 => LiveKey::Hmac(hmac::Key::new(hmac::HMAC_SHA256, &material)),
        KeyKind::EcdsaP256 => LiveKey::Ecdsa(Box::new(
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &material, rng)
                .map_err(|_| corrupt())?,
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn token(dir: &Path) -> SimToken {
        SimToken::open(dir, SimOptions::default()).expect("open token")
    }

    #[test]
    fn wrap_round_trip_and_aad_binding() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = token(dir.path());
        let kek = t
            .create_key(KeyKind::Aes256Gcm, "kek/t1/1")
            .expect("create");
        let wrapped = t
            .wrap(&kek, b"0123456789abcdef0123456789abcdef", b"ad")
            .expect("wrap");
        assert_eq!(
            t.unwrap(&kek, &wrapped, b"ad").expect("unwrap").as_slice(),
            b"0123456789abcdef0123456789abcdef"
        );
        assert!(matches!(
            t.unwrap(&kek, &wrapped, b"other"),
            Err(SimError::Authentication)
        ));
        let mut flipped = wrapped.clone();
        flipped[20] ^= 1;
        assert!(matches!(
            t.unwrap(&kek, &flipped, b"ad"),
            Err(SimError::Authentication)
        ));
    }

    #[test]
    fn keys_survive_reopen_and_file_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (kek, mac, wrapped, tag) = {
            let t = token(dir.path());
            let kek = t.create_key(KeyKind::Aes256Gcm, "kek").expect("create");
            let mac = t.create_key(KeyKind::HmacSha256, "mac").expect("create");
            let wrapped = t.wrap(&kek, b"dek", b"").expect("wrap");
            let tag = t.hmac(&mac, b"123456789018").expect("hmac");
            (kek, mac, wrapped, tag)
        };
        let t = token(dir.path());
        assert_eq!(
            t.unwrap(&kek, &wrapped, b"").expect("unwrap").as_slice(),
            b"dek"
        );
        assert_eq!(t.hmac(&mac, b"123456789018").expect("hmac"), tag);
        let mode = std::fs::metadata(dir.path().join(KEY_FILE_NAME))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn destroyed_key_cannot_unwrap_even_after_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = token(dir.path());
        let kek = t.create_key(KeyKind::Aes256Gcm, "kek").expect("create");
        let wrapped = t.wrap(&kek, b"dek", b"").expect("wrap");
        t.destroy_key(&kek).expect("destroy");
        assert!(matches!(
            t.unwrap(&kek, &wrapped, b""),
            Err(SimError::KeyDestroyed(_))
        ));
        let t = token(dir.path());
        assert!(matches!(
            t.unwrap(&kek, &wrapped, b""),
            Err(SimError::KeyDestroyed(_))
        ));
    }

    #[test]
    fn signature_verifies_with_public_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = token(dir.path());
        let key = t.create_key(KeyKind::EcdsaP256, "audit").expect("create");
        let sig = t.sign(&key, b"checkpoint").expect("sign");
        let public = t.public_key(&key).expect("public key");
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &public)
            .verify(b"checkpoint", &sig)
            .expect("signature verifies");
        assert!(matches!(
            t.hmac(&key, b"x"),
            Err(SimError::WrongKind { .. })
        ));
    }

    #[test]
    fn faults_apply_programmatically_and_from_control_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = SimToken::open(
            dir.path(),
            SimOptions {
                fault_control_file: true,
                shared: false,
            },
        )
        .expect("open");
        let mac = t.create_key(KeyKind::HmacSha256, "mac").expect("create");
        t.set_fault(Fault::Unavailable);
        assert!(matches!(t.hmac(&mac, b"x"), Err(SimError::Unavailable)));
        t.set_fault(Fault::None);
        assert!(t.hmac(&mac, b"x").is_ok());
        std::fs::write(dir.path().join(crate::FAULT_FILE_NAME), "fail").expect("write");
        assert!(matches!(t.hmac(&mac, b"x"), Err(SimError::Injected)));
        std::fs::remove_file(dir.path().join(crate::FAULT_FILE_NAME)).expect("remove");
        assert!(t.hmac(&mac, b"x").is_ok());
    }

    #[test]
    fn a_shared_token_sees_the_other_process_keys_and_destructions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = SimOptions {
            fault_control_file: false,
            shared: true,
        };
        let a = SimToken::open(dir.path(), shared.clone()).expect("open a");
        let b = SimToken::open(dir.path(), shared).expect("open b");
        let made_by_a = a
            .create_key(KeyKind::Aes256Gcm, "kek")
            .expect("create on a");
        let made_by_b = b
            .create_key(KeyKind::HmacSha256, "mac")
            .expect("create on b");
        // Each sees the other's key, and neither creation lost the other's.
        let wrapped = a.wrap(&made_by_a, b"dek", b"aad").expect("wrap on a");
        assert_eq!(
            b.unwrap(&made_by_a, &wrapped, b"aad")
                .expect("unwrap on b")
                .as_slice(),
            b"dek"
        );
        assert_eq!(
            a.hmac(&made_by_b, b"m").expect("hmac on a"),
            b.hmac(&made_by_b, b"m").expect("hmac on b")
        );
        a.destroy_key(&made_by_a).expect("destroy on a");
        assert!(matches!(
            b.unwrap(&made_by_a, &wrapped, b"aad"),
            Err(SimError::KeyDestroyed(_))
        ));
        // An unshared token keeps what it loaded (one process, no stat per operation).
        let alone = SimToken::open(dir.path(), SimOptions::default()).expect("open alone");
        a.create_key(KeyKind::HmacSha256, "later").expect("create");
        assert_eq!(alone.read_state().file.keys.len(), 2);
    }
}
