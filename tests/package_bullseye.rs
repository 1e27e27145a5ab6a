//! The packaged `.deb` (portable build, glibc 2.17 symbols) on an older userland, for real:
//! a Debian 11 "bullseye" root filesystem (glibc 2.31, Linux-PAM 1.4, OpenSSH 8.4) made with
//! `debootstrap` from Debian's package registry, cached in /var/cache/ecs-mfa-test between runs.
//! In a throwaway namespace container (private mount, pid, network with loopback only, uts)
//! whose root is an overlay on that cache: `dpkg -i` the package, enroll with its `mfa-enroll`,
//! authenticate with bullseye's `pamtester`, and log in over SSH with bullseye's own sshd using
//! the shipped example files. The cache is never changed; nothing on the host is.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::text;

const CACHE: &str = "/var/cache/ecs-mfa-test/bullseye";
const PACKAGES: &str = "openssh-server,openssh-client,pamtester,oathtool,libpam-modules,iproute2";

/// The bullseye root filesystem, made once (about 30 s and 240 MB) and reused.
fn rootfs() -> PathBuf {
    let root = PathBuf::from(CACHE);
    let stamp = root.join(".ecs-mfa-complete");
    if stamp.exists() {
        return root;
    }
    assert!(
        Path::new("/usr/sbin/debootstrap").exists(),
        "debootstrap is missing: apt-get install debootstrap (scripts/deps does this)"
    );
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={PACKAGES}")])
        .args(["bullseye"])
        .arg(&root)
        .arg("http://deb.debian.org/debian")
        .output()
        .unwrap();
    common::assert_ok(&out, "debootstrap bullseye");
    std::fs::write(&stamp, "").unwrap();
    root
}

/// The .deb that `scripts/package` builds.
fn deb() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(repo.join("scripts/package")).output().unwrap();
    common::assert_ok(&out, "scripts/package");
    repo.join(format!(
        "target/debian/ecs-mfa_{}-1_amd64.deb",
        env!("CARGO_PKG_VERSION")
    ))
}

/// Outside: the namespaces and the overlay root; inside (in the chroot): [`SCENARIO`].
const CONTAINER: &str = r#"set -e
work=$1 lower=$2 deb=$3
mkdir -p "$work/upper" "$work/work" "$work/root"
mount -t overlay ecs-mfa-bullseye -o "lowerdir=$lower,upperdir=$work/upper,workdir=$work/work" "$work/root"
r=$work/root
mount -t proc proc "$r/proc"
mount -t tmpfs -o mode=755 ecs-mfa-dev "$r/dev"
for n in "null c 1 3" "zero c 1 5" "random c 1 8" "urandom c 1 9" "tty c 5 0"; do
  set -- $n; mknod -m 666 "$r/dev/$1" "$2" "$3" "$4"
done
mkdir "$r/dev/pts" && mount -t devpts -o newinstance,ptmxmode=0666 devpts "$r/dev/pts"
ln -s pts/ptmx "$r/dev/ptmx"
mount -t tmpfs -o mode=755 ecs-mfa-run "$r/run"
mount -t tmpfs -o mode=1777 ecs-mfa-tmp "$r/tmp"
cp "$deb" "$r/tmp/ecs-mfa.deb"
hostname bullseye-test
ip link set lo up
exec chroot "$r" /bin/sh -c "$SCENARIO"
"#;

/// Inside bullseye.
const SCENARIO: &str = r#"set -e
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# /dev/log -> /tmp/syslog (perl-base is part of every Debian system).
perl -MIO::Socket::UNIX -e '
  $| = 1;
  my $s = IO::Socket::UNIX->new(Type => SOCK_DGRAM(), Local => "/dev/log") or die "log: $!";
  chmod 0666, "/dev/log";
  open(my $f, ">>", "/tmp/syslog") or die;
  $f->autoflush(1);
  while (defined $s->recv(my $buf, 65536)) { print $f "$buf\n"; }
' &
for _ in $(seq 100); do [ -S /dev/log ] && break; sleep 0.05; done
echo "glibc: $(/lib/x86_64-linux-gnu/libc.so.6 | head -n 1)"
dpkg -i /tmp/ecs-mfa.deb > /tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; exit 1; }
useradd -m -s /bin/sh alice
mfa-enroll enroll --user alice --no-confirm --json > /tmp/enroll.json
secret=$(sed 's/.*"secret":"\([A-Z2-7]*\)".*/\1/' /tmp/enroll.json)
printf 'auth required pam_ecs_mfa.so\naccount required pam_permit.so\n' > /etc/pam.d/ecs-mfa-test
code=$(oathtool --totp -b "$secret")
echo "$code" | pamtester ecs-mfa-test alice authenticate && echo "RESULT pamtester-first ok"
echo "$code" | pamtester ecs-mfa-test alice authenticate || echo "RESULT pamtester-replay refused"
# sshd: bullseye's own, wired with the shipped example files as README says.
cp /usr/share/doc/ecs-mfa/examples/sshd_config.d/50-ecs-mfa.conf /etc/ssh/sshd_config.d/
cp /usr/share/doc/ecs-mfa/examples/debian/sshd /etc/pam.d/sshd
printf 'ListenAddress 127.0.0.1\nPidFile /run/sshd.pid\n' > /etc/ssh/sshd_config.d/00-test.conf
mkdir -p /run/sshd
/usr/sbin/sshd -t
/usr/sbin/sshd
su alice -c "ssh-keygen -q -t ed25519 -N '' -f /home/alice/.ssh/id_ed25519 && cp /home/alice/.ssh/id_ed25519.pub /home/alice/.ssh/authorized_keys"
cat > /tmp/askpass <<'ASK'
#!/bin/sh
cat /tmp/answer
ASK
chmod 755 /tmp/askpass
sleep 31   # the next time step: the code above was used twice already
oathtool --totp -b "$secret" > /tmp/answer
chmod 644 /tmp/answer
su alice -c "SSH_ASKPASS=/tmp/askpass SSH_ASKPASS_REQUIRE=force ssh -F /dev/null -T -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o NumberOfPasswordPrompts=1 -i /home/alice/.ssh/id_ed25519 alice@127.0.0.1 'echo RESULT ssh-key-and-code \$(id -un)' </dev/null 2>/tmp/ssh.err" || { echo "RESULT ssh-key-and-code FAILED"; grep -i 'askpass\|keyboard\|prompt\|debug1: Authent\|Server accepts\|Partial' /tmp/ssh.err | head -20; }
echo wrong > /tmp/answer
su alice -c "SSH_ASKPASS=/tmp/askpass SSH_ASKPASS_REQUIRE=force ssh -F /dev/null -T -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o NumberOfPasswordPrompts=1 -i /home/alice/.ssh/id_ed25519 alice@127.0.0.1 'echo RESULT ssh-wrong-code-got-in' </dev/null" || echo "RESULT ssh-wrong-code refused"
kill "$(cat /run/sshd.pid)"
echo "--- syslog"
cat /tmp/syslog
"#;

#[test]
fn the_deb_installs_and_works_on_debian_11_bullseye() {
    common::require_real_parts();
    let lower = rootfs();
    let deb = deb();
    let work = std::env::temp_dir().join(format!("ecs-mfa-bullseye-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let child = Command::new("unshare")
        .args([
            "--mount",
            "--pid",
            "--fork",
            "--net",
            "--uts",
            "--propagation",
            "private",
        ])
        .args(["/bin/sh", "-c", CONTAINER, "sh"])
        .arg(&work)
        .arg(&lower)
        .arg(&deb)
        .env("SCENARIO", SCENARIO)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = common::wait_with_timeout(child, Duration::from_secs(300));
    let _ = std::fs::remove_dir_all(&work);
    let all = text(&out.stdout) + &text(&out.stderr);
    common::assert_ok(&out, "the scenario inside bullseye");
    assert!(
        all.contains("glibc: GNU C Library (Debian GLIBC 2.31"),
        "{all}"
    );
    for expected in [
        "RESULT pamtester-first ok",
        "RESULT pamtester-replay refused",
        "RESULT ssh-key-and-code alice",
        "RESULT ssh-wrong-code refused",
    ] {
        assert!(all.contains(expected), "missing '{expected}':\n{all}");
    }
    assert!(!all.contains("ssh-wrong-code-got-in"), "{all}");
    assert!(
        Path::new(CACHE).join(".ecs-mfa-complete").exists()
            && !Path::new(CACHE).join("usr/sbin/mfa-enroll").exists(),
        "the cached root filesystem is never changed"
    );
}
