//! One connection to a PKCS#11 token: the initialised library, the slot, the login, a pool of
//! sessions and a cache of object handles. A connection is replaced, never repaired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;

use crate::keys::KeyError;
use crate::keys::pkcs11::Pkcs11Settings;

/// Why a token operation failed.
#[derive(Debug)]
pub enum Failure {
    /// The token reported an error.
    Token(CkError),
    /// No object has the key's id (it was destroyed).
    Missing,
    /// Authenticated decryption failed while the token is demonstrably present.
    Integrity,
    /// The token no longer holds the locker's sentinel object: it is not the token we
    /// connected to any more (removed, or its storage is gone).
    Lost,
}

impl From<CkError> for Failure {
    fn from(error: CkError) -> Failure {
        Failure::Token(error)
    }
}

struct Shared {
    context: Pkcs11,
    slot: Slot,
    idle: Mutex<Vec<Session>>,
    handles: Mutex<HashMap<(Vec<u8>, u8), ObjectHandle>>,
    max_sessions: usize,
}

/// A live connection; clones share it.
pub struct Connection {
    shared: Arc<Shared>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Sessions close before the library is finalised (cryptoki finalises on drop of the
        // last context clone).
        self.idle
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl Connection {
    /// Loads the module, initialises it, finds the token by label and logs in.
    pub fn open(settings: &Pkcs11Settings) -> Result<Connection, KeyError> {
        let unavailable =
            |what: &str, e: CkError| KeyError::Unavailable(format!("PKCS#11 {what}: {e}"));
        let context = Pkcs11::new(&settings.module).map_err(|e| {
            KeyError::Unavailable(format!(
                "cannot load PKCS#11 module {}: {e}",
                settings.module.display()
            ))
        })?;
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(unavailable("initialise", e)),
        }
        let slot = context
            .get_slots_with_token()
            .map_err(|e| unavailable("list slots", e))?
            .into_iter()
            .find(|slot| {
                context
                    .get_token_info(*slot)
                    .is_ok_and(|info| info.label().trim_end() == settings.token_label)
            })
            .ok_or_else(|| {
                KeyError::Unavailable(format!(
                    "no PKCS#11 token labelled {:?}",
                    settings.token_label
                ))
            })?;
        let session = context
            .open_rw_session(slot)
            .map_err(|e| unavailable("open session", e))?;
        match session.login(UserType::User, Some(&settings.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(
                rv @ (RvError::PinIncorrect | RvError::PinLocked | RvError::PinInvalid),
                _,
            )) => {
                return Err(KeyError::Other(format!("PKCS#11 login refused: {rv}")));
            }
            Err(e) => return Err(unavailable("login", e)),
        }
        ensure_sentinel(&session).map_err(|e| unavailable("create sentinel object", e))?;
        Ok(Connection {
            shared: Arc::new(Shared {
                context,
                slot,
                idle: Mutex::new(vec![session]),
                handles: Mutex::new(HashMap::new()),
                max_sessions: settings.max_sessions.max(1),
            }),
        })
    }

    /// Another handle on the same connection.
    pub fn clone_handle(&self) -> Connection {
        Connection {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Whether two handles are the same connection.
    pub fn same_as(&self, other: &Connection) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// An idle session, or a new one (all sessions share the login of the first).
    pub fn checkout(&self) -> Result<Session, CkError> {
        if let Some(session) = self
            .shared
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
        {
            return Ok(session);
        }
        self.shared.context.open_rw_session(self.shared.slot)
    }

    /// Returns a session to the pool (closing it if the pool is full).
    pub fn checkin(&self, session: Session) {
        let mut idle = self.shared.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.shared.max_sessions {
            idle.push(session);
        }
    }

    /// The handle of the object with `id` and `class`, from the cache or the token.
    pub fn find_cached(
        &self,
        session: &Session,
        id: &[u8],
        class: ObjectClass,
    ) -> Result<ObjectHandle, Failure> {
        let key = (id.to_vec(), class_tag(class));
        if let Some(handle) = self
            .shared
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(*handle);
        }
        let found = session.find_objects(&[Attribute::Id(id.to_vec()), Attribute::Class(class)])?;
        let handle = *found.first().ok_or(Failure::Missing)?;
        self.shared
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, handle);
        Ok(handle)
    }

    /// Whether the token still holds the sentinel object (checked without any cache).
    pub fn token_present(&self, session: &Session) -> Result<bool, CkError> {
        Ok(!session.find_objects(&sentinel_template())?.is_empty())
    }

    /// Drops cached handles of `id` (after destruction).
    pub fn forget(&self, id: &[u8]) {
        self.shared
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(cached, _), _| cached != id);
    }
}

/// Label of the data object whose presence shows the token is the one the locker uses.
pub const SENTINEL_LABEL: &str = "mynumber-locker-sentinel";

fn sentinel_template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Label(SENTINEL_LABEL.as_bytes().to_vec()),
    ]
}

fn ensure_sentinel(session: &Session) -> Result<(), CkError> {
    if session.find_objects(&sentinel_template())?.is_empty() {
        let mut template = sentinel_template();
        template.extend([Attribute::Private(true), Attribute::Modifiable(false)]);
        session.create_object(&template)?;
    }
    Ok(())
}

fn class_tag(class: ObjectClass) -> u8 {
    if class == ObjectClass::SECRET_KEY {
        1
    } else if class == ObjectClass::PRIVATE_KEY {
        2
    } else {
        3
    }
}
