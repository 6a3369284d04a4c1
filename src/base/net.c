/* Listening addresses: a host name or address and a port into a socket address for the servers. */
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "vlm4rec/base.h"

int v4r_listen_address(const char *host, int port, const char *what, struct sockaddr_storage *sa, int *v6,
                       v4r_err *err)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res)
        return v4r_fail(err, V4R_EUSAGE, "%s: cannot resolve the address '%s': %s", what, host, gai_strerror(rc));
    memset(sa, 0, sizeof *sa);
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    if (*v6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return V4R_OK;
}
