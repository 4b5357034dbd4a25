/*  keys — emq-cli keygen: CURVE key pairs for the router and its peers
    (docs/operations.md, "Encryption").
*/
#include "cli.h"
#include "curve.h"

#include <czmq.h>

int
cli_keygen (cli_t *cli, int argc, char **argv)
{
    static const struct option options[] = { { "role", required_argument, NULL, 'r' },
                                             CLI_GLOBAL_OPTIONS };
    char roles[256] = "";
    int opt;
    while ((opt = getopt_long (argc, argv, ":", options, NULL)) != -1) {
        if (opt == 'r') {
            size_t used = strlen (roles);
            if (used + strlen (optarg) + 2 > sizeof roles)
                return cli_usage_error ("keygen: too many roles");
            snprintf (roles + used, sizeof roles - used, "%s%s", used ? "," : "", optarg);
            continue;
        }
        int rc = cli_other_option (cli, "keygen", opt, optarg, argv);
        if (rc >= 100)
            return rc - 100;
        if (rc)
            return rc;
    }
    if (argc - optind != 1)
        return cli_usage_error ("keygen: give one NAME (writes NAME and NAME_secret)");
    const char *path = argv[optind];
    char err[PATH_MAX + 200];
    if (curve_roles_check (*roles ? roles : "client", err, sizeof err))
        return cli_usage_error ("keygen: --role: %s", err);
    if (curve_keygen (path, *roles ? roles : "client", err, sizeof err))
        return cli_fail (CLI_EXIT_FAILED, "keygen: %s", err);
    zcert_t *cert = zcert_load (path);
    printf (
        "public key %s, roles %s\n"
        "wrote %s (public certificate: for the router's clients directory, or "
        "for whoever must know this key)\n"
        "wrote %s_secret (key pair: keep it private; curve_secret_cert or curve_cert)\n",
        cert ? zcert_public_txt (cert) : "?", *roles ? roles : "client", path, path);
    zcert_destroy (&cert);
    return fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}
