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
  echo "Next: sudo mfa-enroll enroll; then see /usr/share/doc/ecs-mfa/README.md (keep a root session open)."
fi
