# ecs-mfa %postun: enrollments are always kept (rpm has no purge); say where they are.
if [ "$1" = 0 ]; then
  echo "ecs-mfa removed; enrollments kept in /var/lib/ecs-mfa (delete that directory to remove them)."
  if command -v selinuxenabled >/dev/null 2>&1 && selinuxenabled; then
    semodule -r ecs_mfa 2>/dev/null || :
  fi
fi
