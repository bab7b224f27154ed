//! The exchange against a scripted client over an in-memory pipe: every plugin path, the
//! access-denied answer, and a client that stops answering.

use super::*;
use crate::protocol::message::parse_err;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::DuplexStream;

const PASSWORD: &str = "s3cret";
const NONCE: &[u8] = b"abcdefghij0123456789";

fn ctx() -> Arc<Context> {
    let yaml = format!(
        "servers:\n  - {{name: p, host: 127.0.0.1, port: 3340, role: primary}}\n\
         monitor: {{user: m, password: x}}\n\
         proxy:\n  users:\n    - {{name: app, password: {PASSWORD}}}\n"
    );
    let c = router::config::Config::from_yaml("t.yaml", &yaml).expect("valid");
    Context::new(PathBuf::from("t.yaml"), c)
}

fn offer<'a>(plugin: Option<&'a str>, answer: &'a [u8], ask_again: bool) -> Offer<'a> {
    Offer {
        user: "app",
        plugin,
        answer,
        ask_again,
        nonce: NONCE,
        host: "10.0.0.1",
        on_tls: false,
    }
}

async fn read(c: &mut DuplexStream) -> (u8, Vec<u8>) {
    let mut buf = Vec::new();
    let seq = read_packet(c, &mut buf, 1 << 20).await.expect("a packet");
    (seq, buf)
}

async fn send(c: &mut DuplexStream, seq: u8, p: &[u8]) {
    write_packet(c, seq, p).await.unwrap();
    c.flush().await.unwrap();
}

fn switch_to(plugin: &str) -> Vec<u8> {
    let mut p = vec![0xfe];
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    p.extend_from_slice(NONCE);
    p.push(0);
    p
}

#[tokio::test]
async fn native_answer_in_the_first_packet() {
    let ctx = ctx();
    let (mut server, _client) = tokio::io::duplex(4096);
    let answer = scramble(NATIVE, NONCE, PASSWORD).unwrap();
    let v = authenticate(&mut server, &ctx, 2, offer(Some(NATIVE), &answer, false))
        .await
        .expect("verified");
    assert_eq!((v.password.clear(), v.seq), (Some(PASSWORD), 2));
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_1045() {
    let ctx = ctx();
    let (mut server, mut client) = tokio::io::duplex(4096);
    let answer = scramble(NATIVE, NONCE, "wrong").unwrap();
    let r = authenticate(&mut server, &ctx, 2, offer(None, &answer, false)).await;
    assert!(matches!(r, Err(Error::AccessDenied(u)) if u == "app"));
    let (seq, p) = read(&mut client).await;
    let e = parse_err(&p).expect("ERR");
    assert_eq!((seq, e.code, e.state.as_str()), (2, 1045, "28000"));
    assert_eq!(
        e.message,
        "Access denied for user 'app'@'10.0.0.1' (using password: YES)"
    );
    let mut o = offer(None, b"", false);
    o.user = "nobody";
    let r = authenticate(&mut server, &ctx, 2, o).await;
    assert!(matches!(r, Err(Error::AccessDenied(_))));
    let e = parse_err(&read(&mut client).await.1).unwrap();
    assert!(e.message.ends_with("(using password: NO)"), "{}", e.message);
}

#[tokio::test]
async fn change_user_asks_again_with_caching_sha2_fast_path() {
    let ctx = ctx();
    let (mut server, mut client) = tokio::io::duplex(4096);
    let client_side = async {
        let (seq, p) = read(&mut client).await;
        assert_eq!((seq, p), (1, switch_to(SHA2)));
        send(&mut client, 2, &scramble(SHA2, NONCE, PASSWORD).unwrap()).await;
        let (seq, p) = read(&mut client).await;
        assert_eq!((seq, p.as_slice()), (3, &[0x01, 0x03][..]));
    };
    // The COM_CHANGE_USER answer (against another nonce) is not looked at.
    let (v, ()) = tokio::join!(
        authenticate(&mut server, &ctx, 1, offer(Some(SHA2), b"stale", true)),
        client_side
    );
    let v = v.expect("verified");
    assert_eq!(v.seq, 4);
}

#[tokio::test]
async fn caching_sha2_full_authentication_over_tls() {
    let ctx = ctx();
    let (mut server, mut client) = tokio::io::duplex(4096);
    let client_side = async {
        let (seq, p) = read(&mut client).await;
        assert_eq!((seq, p.as_slice()), (2, &[0x01, 0x04][..]));
        send(&mut client, 3, format!("{PASSWORD}\0").as_bytes()).await;
    };
    let mut o = offer(Some(SHA2), &[0; 32], false);
    o.on_tls = true;
    let (v, ()) = tokio::join!(authenticate(&mut server, &ctx, 2, o), client_side);
    assert_eq!(v.expect("verified").seq, 4);

    // A wrong clear password is refused.
    let client_side = async {
        read(&mut client).await;
        send(&mut client, 3, b"nope\0").await;
        parse_err(&read(&mut client).await.1).expect("ERR").code
    };
    let (v, code) = tokio::join!(authenticate(&mut server, &ctx, 2, o), client_side);
    assert!(matches!(v, Err(Error::AccessDenied(_))));
    assert_eq!(code, 1045);
}

#[tokio::test]
async fn an_unknown_plugin_is_switched_to_native() {
    let ctx = ctx();
    let (mut server, mut client) = tokio::io::duplex(4096);
    let client_side = async {
        let (seq, p) = read(&mut client).await;
        assert_eq!((seq, p), (2, switch_to(NATIVE)));
        send(&mut client, 3, &scramble(NATIVE, NONCE, PASSWORD).unwrap()).await;
    };
    let (v, ()) = tokio::join!(
        authenticate(&mut server, &ctx, 2, offer(Some("dialog"), b"x", false)),
        client_side
    );
    assert_eq!(v.expect("verified").seq, 4);
}

#[tokio::test]
async fn a_client_that_stops_answering_is_cut_off() {
    let ctx = ctx();
    let (mut server, mut client) = tokio::io::duplex(4096);
    let r = within(
        Duration::from_millis(100),
        &mut server,
        &ctx,
        1,
        offer(Some(NATIVE), b"", true),
    )
    .await;
    assert!(matches!(r, Err(Error::HandshakeTimeout)), "{r:?}");
    // It got the switch request and nothing after it.
    assert_eq!(read(&mut client).await.1, switch_to(NATIVE));
}

#[test]
fn comparisons() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(secret_eq(b"pw", b"pw"));
    assert!(!secret_eq(b"pw", b"pw2"));
    assert!(secret_eq(b"", b""));
    let v = Verified {
        password: PASSWORD.into(),
        seq: 3,
        slot: user_limit::take(&ctx(), "app", None).expect("no limit"),
    };
    assert!(!format!("{v:?}").contains(PASSWORD));
}

/// A context whose user `app` has only PASSWORD's mysql_native_password hash.
fn ctx_hashed() -> Arc<Context> {
    let stage2 = Sha1::digest(Sha1::digest(PASSWORD.as_bytes()));
    let hex: String = stage2.iter().map(|b| format!("{b:02X}")).collect();
    let yaml = format!(
        "servers:\n  - {{name: p, host: 127.0.0.1, port: 3340, role: primary}}\n\
         monitor: {{user: m, password: x}}\n\
         proxy:\n  users:\n    - {{name: app, password_hash: \"*{hex}\"}}\n"
    );
    let c = router::config::Config::from_yaml("t.yaml", &yaml).expect("valid");
    Context::new(PathBuf::from("t.yaml"), c)
}

#[tokio::test]
async fn a_hashed_user_is_verified_and_yields_sha1_of_the_password() {
    let ctx = ctx_hashed();
    let (mut server, _client) = tokio::io::duplex(4096);
    let answer = scramble(NATIVE, NONCE, PASSWORD).unwrap();
    let v = authenticate(&mut server, &ctx, 2, offer(None, &answer, false))
        .await
        .expect("verified");
    let stage1: [u8; 20] = Sha1::digest(PASSWORD.as_bytes()).into();
    assert_eq!(v.password, Credential::NativeStage1(stage1));
    assert_eq!(v.seq, 2);
}

#[tokio::test]
async fn a_hashed_user_offering_caching_sha2_is_switched_to_native() {
    let ctx = ctx_hashed();
    let (mut server, mut client) = tokio::io::duplex(4096);
    let client_side = async {
        let (seq, p) = read(&mut client).await;
        assert_eq!((seq, p), (2, switch_to(NATIVE)));
        send(&mut client, 3, &scramble(NATIVE, NONCE, PASSWORD).unwrap()).await;
    };
    let sha2 = scramble(SHA2, NONCE, PASSWORD).unwrap();
    let (v, ()) = tokio::join!(
        authenticate(&mut server, &ctx, 2, offer(Some(SHA2), &sha2, false)),
        client_side
    );
    let v = v.expect("verified");
    assert_eq!(v.seq, 4);
    assert!(v.password.clear().is_none());
}

#[tokio::test]
async fn a_hashed_user_with_a_wrong_or_empty_answer_gets_1045() {
    let ctx = ctx_hashed();
    for (answer, using) in [
        (scramble(NATIVE, NONCE, "wrong").unwrap(), "YES"),
        (Vec::new(), "NO"),
    ] {
        let (mut server, mut client) = tokio::io::duplex(4096);
        let r = authenticate(&mut server, &ctx, 2, offer(None, &answer, false)).await;
        assert!(matches!(r, Err(Error::AccessDenied(_))));
        let e = parse_err(&read(&mut client).await.1).expect("ERR");
        assert_eq!(e.code, 1045);
        assert!(
            e.message.ends_with(&format!("(using password: {using})")),
            "{}",
            e.message
        );
    }
}

#[tokio::test]
async fn past_the_users_max_connections_a_verified_client_gets_1226() {
    let yaml = format!(
        "servers:\n  - {{name: p, host: 127.0.0.1, port: 3340, role: primary}}\n\
         monitor: {{user: m, password: x}}\n\
         proxy:\n  users:\n    - {{name: app, password: {PASSWORD}, max_connections: 1}}\n"
    );
    let c = router::config::Config::from_yaml("t.yaml", &yaml).expect("valid");
    let ctx = Context::new(PathBuf::from("t.yaml"), c);
    let answer = scramble(NATIVE, NONCE, PASSWORD).unwrap();
    let (mut server, _client) = tokio::io::duplex(4096);
    let first = authenticate(&mut server, &ctx, 2, offer(None, &answer, false))
        .await
        .expect("first session");
    let (mut server, mut client) = tokio::io::duplex(4096);
    let r = authenticate(&mut server, &ctx, 2, offer(None, &answer, false)).await;
    assert!(matches!(r, Err(Error::UserLimit(_))));
    let e = parse_err(&read(&mut client).await.1).expect("ERR");
    assert_eq!((e.code, e.state.as_str()), (1226, "42000"));
    drop(first);
    let (mut server, _client) = tokio::io::duplex(4096);
    authenticate(&mut server, &ctx, 2, offer(None, &answer, false))
        .await
        .expect("the place came free");
}
