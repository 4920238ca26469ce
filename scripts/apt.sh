# Sourced by the scripts that install what they need from the OS packages.
# Needs $state (the services directory) and a log function.

# apt_install installs Debian packages, running `apt-get update` once per
# services directory.
apt_install() {
	if [ ! -f "$state/.apt-updated" ]; then
		mkdir -p "$state"
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq >&2 && touch "$state/.apt-updated"
	fi
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@" >&2
}
