#!/bin/sh
# Refresh a province's flat apt repository of commune-agent packages after copying a new .deb into it.
#
#   deploy/apt/update-repo.sh /srv/apt/commune/bookworm apt@province.example
#
# DIR is one Debian release's directory (bookworm/ for Debian 12 sites, trixie/ for Debian 13)
# holding the .deb files (amd64 and arm64 may share it); KEY is the gpg key (user id or
# fingerprint) that signs it. Writes Packages, Packages.gz, Release and the signed InRelease in
# DIR, and the key's public part beside DIR as commune-province.gpg, the file each site puts in
# /usr/share/keyrings. Needs dpkg-dev, apt-utils and gnupg (apt-get install dpkg-dev apt-utils
# gnupg); GNUPGHOME is honoured. docs/deploy.md section 12 gives the whole recipe, and
# tests/test_deb_repo.py runs this script and upgrades a site from what it writes.
set -eu
usage() { echo "usage: $0 DIR KEY   (e.g. $0 /srv/apt/commune/bookworm apt@province.example)" >&2; exit 2; }
[ $# -eq 2 ] || usage
DIR=$1 KEY=$2
[ -d "$DIR" ] || { echo "update-repo: $DIR: no such directory" >&2; exit 2; }
for tool in dpkg-scanpackages:dpkg-dev apt-ftparchive:apt-utils gpg:gnupg; do
  command -v "${tool%%:*}" >/dev/null \
    || { echo "update-repo: needs ${tool%%:*} (apt-get install ${tool#*:})" >&2; exit 1; }
done
gpg --batch --list-secret-keys "$KEY" >/dev/null 2>&1 \
  || { echo "update-repo: no secret key $KEY in gpg's keyring (GNUPGHOME=${GNUPGHOME:-~/.gnupg})" >&2; exit 1; }
cd "$DIR"
set -- ./*.deb
[ -e "$1" ] || { echo "update-repo: no .deb in $DIR" >&2; exit 1; }

# every version stays listed, so a site can also be pinned back to an older one
dpkg-scanpackages --multiversion . > Packages 2>/dev/null
gzip -9kf Packages
# the Release file lists the hashes of Packages*; written aside so that it does not list itself
rm -f Release InRelease
apt-ftparchive -o APT::FTPArchive::Release::Origin=commune-monitor \
  -o APT::FTPArchive::Release::Label=commune-agent release . > ../.Release.new
mv ../.Release.new Release
gpg --batch --yes --local-user "$KEY" --clearsign -o InRelease Release
gpg --batch --yes --export "$KEY" > ../commune-province.gpg
echo "update-repo: $DIR: $(grep -c '^Package: ' Packages) package version(s), signed by $KEY"
