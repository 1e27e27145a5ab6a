# ecs-mfa %post: create the root-only store and label it; never touches /etc/pam.d or sshd_config.
install -d -m 0700 -o root -g root /var/lib/ecs-mfa /var/lib/ecs-mfa/users
if command -v systemd-tmpfiles >/dev/null 2>&1; then
  systemd-tmpfiles --create /usr/lib/tmpfiles.d/ecs-mfa.conf || :
fi
if command -v selinuxenabled >/dev/null 2>&1 && selinuxenabled; then
  semodule -i /usr/share/selinux/packages/ecs_mfa.pp 2>/dev/null || :
  restorecon -R /var/lib/ecs-mfa /run/ecs-mfa 2>/dev/null || :
fi
if [ "$1" = 1 ]; then
  echo "ecs-mfa installed. Nothing is enforced yet: /etc/pam.d and sshd_config are unchanged."
  echo "Next steps, in this order (keep a root session open until a login with a code works):"
  echo "  1. sudo mfa-enroll enroll"
  echo "  2. sudo cp -a /etc/pam.d/sshd /etc/pam.d/sshd.before-ecs-mfa    # backup, for uninstalling"
  echo "  3. sshd first: sudo cp /usr/share/doc/ecs-mfa/examples/sshd_config.d/50-ecs-mfa.conf /etc/ssh/sshd_config.d/"
  echo "     sudo sshd -t && sudo systemctl reload sshd"
  echo "  4. then PAM:   sudo cp /usr/share/doc/ecs-mfa/examples/rhel/sshd /etc/pam.d/sshd"
  echo "  5. sudo mfa-enroll doctor; log in from a second terminal"
  echo "Details: /usr/share/doc/ecs-mfa/README.md (\"First-time setup\")."
fi
