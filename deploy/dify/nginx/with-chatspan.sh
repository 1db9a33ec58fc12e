#!/bin/sh
# Writes Dify's nginx server template with chatspan's locations added to its server
# block (Dify's template has no include hook there), so that Dify's own nginx serves
# chatspan's admin page and API next to Dify's console:
#
#   deploy/dify/nginx/with-chatspan.sh docker/nginx/conf.d/default.conf.template \
#       > docker/chatspan/default.conf.template
#
# Run it again after upgrading Dify. It refuses a template it does not recognise, and
# one that already has chatspan's locations.
set -eu

template=${1:?usage: with-chatspan.sh DIFY_TEMPLATE > OUTPUT}
locations="$(dirname "$0")/chatspan-locations.conf"

if grep -q 'location /console/api/admin/' "$template"; then
    echo "with-chatspan.sh: $template already routes /console/api/admin/" >&2
    exit 1
fi
if ! grep -q '^[[:space:]]*server_name' "$template"; then
    echo "with-chatspan.sh: $template has no server_name line: not Dify's server template?" >&2
    exit 1
fi

awk -v locations="$locations" '
    { print }
    /^[[:space:]]*server_name/ && !done {
        print ""
        while ((getline line < locations) > 0) print line
        done = 1
    }
' "$template"
