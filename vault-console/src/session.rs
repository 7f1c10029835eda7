//! Server-side sessions: the cookie holds only a random id; the person's token stays in this
//! process's memory (zeroized when the session ends) and is never sent to the browser again.
//! A session ends on sign-out, after the idle timeout, after the absolute timeout, or when the
//! daemon no longer accepts its token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use secrecy::SecretString;

/// Sessions held at most at once: a flood of sign-ins cannot grow memory without bound (the
/// oldest idle session makes room).
pub const MAX_SESSIONS: usize = 1000;

/// Who a session belongs to, as the daemon said at sign-in (`WhoAmI`).
#[derive(Debug, Clone)]
pub struct Person {
    /// The operator id.
    pub operator_id: String,
    /// The role's wire name (`admin`, `auditor`, …).
    pub role: String,
    /// The operator's display name (shown escaped, as any text).
    pub display_name: String,
    /// The token's public id (never its secret).
    pub token_id: String,
}

/// One signed-in person.
#[derive(Clone)]
pub struct Session {
    /// Who signed in.
    pub person: Person,
    /// The bearer token every call of this session sends.
    pub token: SecretString,
    /// The form token every POST of this session must carry.
    pub csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// How long sessions live.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// Ended after this long without a request.
    pub idle: Duration,
    /// Ended this long after sign-in, however active.
    pub absolute: Duration,
}

/// The sessions of this console.
pub struct Sessions {
    lifetimes: Lifetimes,
    random: SystemRandom,
    by_id: Mutex<HashMap<String, Session>>,
}

/// A fresh random value as hex (32 bytes: unguessable session ids and form tokens).
pub fn random_hex(random: &SystemRandom) -> String {
    let mut bytes = [0u8; 32];
    // SystemRandom reads the kernel's generator; it fails only if the kernel has none.
    random
        .fill(&mut bytes)
        .expect("the kernel's random number generator is unavailable");
    hex::encode(bytes)
}

impl Sessions {
    /// No sessions yet.
    pub fn new(lifetimes: Lifetimes) -> Arc<Sessions> {
        Arc::new(Sessions {
            lifetimes,
            random: SystemRandom::new(),
            by_id: Mutex::new(HashMap::new()),
        })
    }

    /// How long sessions live.
    pub fn lifetimes(&self) -> Lifetimes {
        self.lifetimes
    }

    /// A fresh random value (sign-in form tokens).
    pub fn random(&self) -> String {
        random_hex(&self.random)
    }

    /// Starts a session for `person` and returns its id (the cookie's value).
    pub fn start(&self, person: Person, token: SecretString) -> String {
        let id = self.random();
        let now = Instant::now();
        let session = Session {
            person,
            token,
            csrf: self.random(),
            created: now,
            last_seen: now,
        };
        let mut sessions = self.lock();
        sessions.retain(|_, s| self.alive(s, now));
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), session);
        id
    }

    /// The live session `id`, its idle clock restarted; `None` (and forgotten) once expired.
    pub fn touch(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut sessions = self.lock();
        let alive = sessions.get(id).is_some_and(|s| self.alive(s, now));
        if !alive {
            sessions.remove(id);
            return None;
        }
        let session = sessions.get_mut(id)?;
        session.last_seen = now;
        Some(session.clone())
    }

    /// Ends session `id` (sign-out, or the daemon refused its token).
    pub fn end(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Sessions alive now.
    #[cfg(test)]
    pub fn count(&self) -> usize {
        let now = Instant::now();
        self.lock().values().filter(|s| self.alive(s, now)).count()
    }

    fn alive(&self, session: &Session, now: Instant) -> bool {
        now.duration_since(session.last_seen) < self.lifetimes.idle
            && now.duration_since(session.created) < self.lifetimes.absolute
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_id.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person() -> Person {
        Person {
            operator_id: "a".into(),
            role: "admin".into(),
            display_name: String::new(),
            token_id: "t".into(),
        }
    }

    #[test]
    fn a_session_ends_when_idle_and_at_its_absolute_limit() {
        let idle = Sessions::new(Lifetimes {
            idle: Duration::from_millis(50),
            absolute: Duration::from_secs(60),
        });
        let id = idle.start(person(), "x".to_owned().into());
        assert!(idle.touch(&id).is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert!(idle.touch(&id).is_none(), "idle past its limit");

        let absolute = Sessions::new(Lifetimes {
            idle: Duration::from_secs(60),
            absolute: Duration::from_millis(120),
        });
        let id = absolute.start(person(), "x".to_owned().into());
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(30));
            assert!(absolute.touch(&id).is_some(), "active within the limit");
        }
        std::thread::sleep(Duration::from_millis(60));
        assert!(absolute.touch(&id).is_none(), "active, but past the limit");
    }

    #[test]
    fn sessions_are_bounded_and_ids_unguessable() {
        let sessions = Sessions::new(Lifetimes {
            idle: Duration::from_secs(60),
            absolute: Duration::from_secs(60),
        });
        let first = sessions.start(person(), "x".to_owned().into());
        for _ in 0..MAX_SESSIONS + 5 {
            sessions.start(person(), "x".to_owned().into());
        }
        assert_eq!(sessions.count(), MAX_SESSIONS);
        assert!(sessions.touch(&first).is_none(), "the oldest made room");
        assert_eq!(first.len(), 64);
        assert!(sessions.touch("0".repeat(64).as_str()).is_none());
    }
}
