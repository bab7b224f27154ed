//! The watcher sees content changes (also through a symlink swap, as a mounted ConfigMap
//! changes), ignores a file that is still changing, and reloads each change once.

use super::*;
use std::os::unix::fs::symlink;

const YAML: &str = "servers:\n  - {name: p, host: 127.0.0.1, port: 3340, role: primary}\n  - {name: r1, host: 127.0.0.1, port: 3341, role: replica}\nmonitor: {user: m, password: x}\nproxy: {max_connections: 2}\n";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rwsplit-watch-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn reloads(ctx: &Context, result: &str) -> u64 {
    ctx.metrics
        .config_reloads
        .with_label_values(&[result])
        .get()
}

#[test]
fn fingerprint_follows_the_content_and_the_files_it_names() {
    let dir = scratch("content");
    let path = dir.join("c.yaml");
    std::fs::write(&path, YAML).unwrap();
    let a = fingerprint(&path);
    assert_eq!(a, fingerprint(&path), "same bytes, same fingerprint");
    std::fs::write(
        &path,
        YAML.replace("max_connections: 2", "max_connections: 3"),
    )
    .unwrap();
    let b = fingerprint(&path);
    assert_ne!(a, b);

    // A password file the configuration names is part of it.
    let secret = dir.join("monitor-password");
    std::fs::write(&secret, "one").unwrap();
    let with_file = YAML.replace(
        "password: x",
        &format!("password_file: {}", secret.display()),
    );
    std::fs::write(&path, &with_file).unwrap();
    let c = fingerprint(&path);
    std::fs::write(&secret, "two").unwrap();
    assert_ne!(c, fingerprint(&path), "a changed password file is a change");

    std::fs::remove_file(&path).unwrap();
    assert_ne!(fingerprint(&path), c, "a missing file is a change too");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_symlink_swap_like_the_kubelets_is_seen() {
    // The kubelet's layout: c.yaml -> ..data/c.yaml, ..data -> ..<timestamp>/.
    let dir = scratch("swap");
    std::fs::create_dir(dir.join("..v1")).unwrap();
    std::fs::write(dir.join("..v1/c.yaml"), YAML).unwrap();
    symlink("..v1", dir.join("..data")).unwrap();
    symlink("..data/c.yaml", dir.join("c.yaml")).unwrap();
    let path = dir.join("c.yaml");
    let before = fingerprint(&path);

    std::fs::create_dir(dir.join("..v2")).unwrap();
    std::fs::write(
        dir.join("..v2/c.yaml"),
        YAML.replace("max_connections: 2", "max_connections: 5"),
    )
    .unwrap();
    symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..v1")).unwrap();
    assert_ne!(before, fingerprint(&path));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn each_change_is_reloaded_once_and_only_when_it_holds() {
    let dir = scratch("reload");
    let path = dir.join("c.yaml");
    std::fs::write(&path, YAML).unwrap();
    let ctx = Context::new(
        path.clone(),
        crate::context::load_config(&path).expect("valid"),
    );
    let reloader = Reloader::new(ctx.clone());
    assert!(
        !reloader.reload_if_changed(reloader.current()),
        "nothing changed"
    );

    std::fs::write(
        &path,
        YAML.replace("max_connections: 2", "max_connections: 7"),
    )
    .unwrap();
    let seen = reloader.current();
    // The file changes again before the next poll: not stable, not reloaded.
    std::fs::write(
        &path,
        YAML.replace("max_connections: 2", "max_connections: 8"),
    )
    .unwrap();
    assert!(!reloader.reload_if_changed(seen));
    assert_eq!(ctx.proxy_config().max_connections, 2);

    let seen = reloader.current();
    assert!(reloader.reload_if_changed(seen));
    assert_eq!(ctx.proxy_config().max_connections, 8);
    assert_eq!(reloads(&ctx, "ok"), 1);
    assert!(!reloader.reload_if_changed(seen), "applied already");

    // A broken file is rejected once, not on every poll.
    std::fs::write(&path, YAML.replace("servers:", "servers_typo:")).unwrap();
    let seen = reloader.current();
    assert!(reloader.reload_if_changed(seen));
    assert!(!reloader.reload_if_changed(seen));
    assert_eq!(reloads(&ctx, "error"), 1);
    assert_eq!(
        ctx.proxy_config().max_connections,
        8,
        "the running one stays"
    );

    // A SIGHUP reload records what it read: the watcher does not reload it again.
    std::fs::write(&path, YAML).unwrap();
    reloader.reload("SIGHUP");
    assert_eq!(reloads(&ctx, "ok"), 2);
    assert!(!reloader.reload_if_changed(reloader.current()));
    assert_eq!(reloads(&ctx, "ok"), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_watch_task_applies_a_change_without_a_signal() {
    let dir = scratch("task");
    let path = dir.join("c.yaml");
    std::fs::write(&path, YAML).unwrap();
    let ctx = Context::new(
        path.clone(),
        crate::context::load_config(&path).expect("valid"),
    );
    let task = tokio::spawn(watch_every(
        Reloader::new(ctx.clone()),
        Duration::from_millis(20),
    ));
    std::fs::write(
        &path,
        YAML.replace("max_connections: 2", "max_connections: 9"),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ctx.proxy_config().max_connections != 9 {
        assert!(std::time::Instant::now() < deadline, "change not applied");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    assert_eq!(reloads(&ctx, "ok"), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
