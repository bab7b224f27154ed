//! What the proxy logs in to a backend with on a client's behalf: the password in clear (a
//! user configured with one), or only SHA1(password), recovered from the answer of a client
//! that proved it knows the password of a user configured with a hash
//! (`proxy.users[].password_hash`). The `mysql_native_password` scramble needs no more than
//! SHA1(password); `caching_sha2_password` and clear-text plugins need the password itself.

use sha1::{Digest, Sha1};

/// A backend login secret. Never logged (`Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// The password in clear.
    Clear(String),
    /// SHA1(password) only ("stage 1"): enough for `mysql_native_password`.
    NativeStage1([u8; 20]),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::Clear(_) => "Credential::Clear(<redacted>)",
            Credential::NativeStage1(_) => "Credential::NativeStage1(<redacted>)",
        })
    }
}

impl Default for Credential {
    fn default() -> Self {
        Credential::Clear(String::new())
    }
}

impl From<&str> for Credential {
    fn from(s: &str) -> Self {
        Credential::Clear(s.to_string())
    }
}

impl Credential {
    /// The password in clear, when the proxy has it.
    pub fn clear(&self) -> Option<&str> {
        match self {
            Credential::Clear(p) => Some(p),
            Credential::NativeStage1(_) => None,
        }
    }

    /// The answer to a server's `plugin` challenge `nonce`, as [`super::handshake::scramble`]
    /// computes it from a clear password; `None` for a plugin it cannot answer (an unknown
    /// plugin, or one that needs the clear password when only SHA1(password) is known).
    pub fn scramble(&self, plugin: &str, nonce: &[u8]) -> Option<Vec<u8>> {
        match self {
            Credential::Clear(p) => super::handshake::scramble(plugin, nonce, p),
            Credential::NativeStage1(stage1) if plugin == "mysql_native_password" => {
                Some(native_from_stage1(nonce, stage1).to_vec())
            }
            Credential::NativeStage1(_) => None,
        }
    }
}

/// `mysql_native_password`'s answer from SHA1(password):
/// SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password))).
pub fn native_from_stage1(nonce: &[u8], stage1: &[u8; 20]) -> [u8; 20] {
    let nonce = &nonce[..nonce.len().min(20)];
    let stage2 = Sha1::digest(stage1);
    let mut h = Sha1::new();
    h.update(nonce);
    h.update(stage2);
    let mask = h.finalize();
    let mut out = *stage1;
    out.iter_mut().zip(mask.iter()).for_each(|(o, m)| *o ^= m);
    out
}

/// The SHA1(password) a client's `mysql_native_password` answer `token` to `nonce` reveals,
/// given the stored SHA1(SHA1(password)), if the answer is right (SHA1 of what it reveals is
/// the stored hash); `None` otherwise. How a server checks the answer, and why the proxy can
/// log in to the backends afterwards without the password.
pub fn verify_native(nonce: &[u8], stage2: &[u8; 20], token: &[u8]) -> Option<[u8; 20]> {
    let token: &[u8; 20] = token.try_into().ok()?;
    let nonce = &nonce[..nonce.len().min(20)];
    let mut h = Sha1::new();
    h.update(nonce);
    h.update(stage2);
    let mask = h.finalize();
    let mut stage1 = *token;
    stage1
        .iter_mut()
        .zip(mask.iter())
        .for_each(|(s, m)| *s ^= m);
    let check = Sha1::digest(stage1);
    let same = check
        .iter()
        .zip(stage2)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0;
    same.then_some(stage1)
}

#[cfg(test)]
mod test {
    use super::*;

    fn stage1(pw: &str) -> [u8; 20] {
        Sha1::digest(pw.as_bytes()).into()
    }

    #[test]
    fn stage1_answers_as_the_clear_password_does() {
        let nonce: Vec<u8> = (1..=20).collect();
        let clear = Credential::Clear("app-password".into());
        let hashed = Credential::NativeStage1(stage1("app-password"));
        let native = "mysql_native_password";
        assert_eq!(
            hashed.scramble(native, &nonce),
            clear.scramble(native, &nonce)
        );
        assert_eq!(hashed.scramble("caching_sha2_password", &nonce), None);
        assert_eq!(hashed.scramble("mysql_clear_password", &nonce), None);
        assert!(clear.scramble("caching_sha2_password", &nonce).is_some());
    }

    #[test]
    fn a_right_answer_reveals_stage1_and_a_wrong_one_nothing() {
        let nonce: Vec<u8> = (21..=40).collect();
        let s1 = stage1("app-password");
        let s2: [u8; 20] = Sha1::digest(s1).into();
        let token = Credential::Clear("app-password".into())
            .scramble("mysql_native_password", &nonce)
            .expect("native");
        assert_eq!(verify_native(&nonce, &s2, &token), Some(s1));
        let wrong = Credential::Clear("nope".into())
            .scramble("mysql_native_password", &nonce)
            .expect("native");
        assert_eq!(verify_native(&nonce, &s2, &wrong), None);
        assert_eq!(verify_native(&nonce, &s2, &[]), None);
        assert_eq!(verify_native(&nonce, &s2, &token[..19]), None);
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = Credential::Clear("sekrit".into());
        assert!(!format!("{c:?}").contains("sekrit"));
    }
}
