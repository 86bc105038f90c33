/*
 * util/redact.h — credentials out of what inferd logs and answers.
 *
 * Store and broker URLs carry secrets in two places: the user info
 * (postgres://user:PASSWORD@host) and query parameters libpq and friends
 * accept (?password=..., ?sslpassword=...). Everything that prints such a URL
 * (the start-up line, store and broker errors) prints redact_url() of it.
 */
#ifndef INFERD_UTIL_REDACT_H
#define INFERD_UTIL_REDACT_H

/*
 * `url` with the password of its user info and the value of every query
 * parameter whose name is a secret's (password, passwd, pass, pwd,
 * sslpassword, secret, token, access_token, api_key, apikey, auth; any
 * case) replaced by "***". Anything else, even text that is not a URL, is
 * kept as is. NULL gives NULL. The caller frees the result.
 */
char *redact_url(const char *url);

#endif
