/* SPDX-License-Identifier: MIT */
/* Names for wsrelay's return codes and for negative errno values. */
#include "core/wr.h"

#include <string.h>

const char *wr_strerror(int code)
{
    switch (code) {
    case 0: return "OK";
    case WR_AGAIN: return "WR_AGAIN";
    case WR_EHTTP_TOO_LARGE: return "WR_EHTTP_TOO_LARGE";
    case WR_EHTTP_MALFORMED: return "WR_EHTTP_MALFORMED";
    case WR_EWS_RESERVED_BITS: return "WR_EWS_RESERVED_BITS";
    case WR_EWS_OPCODE: return "WR_EWS_OPCODE";
    case WR_EWS_CONTROL_FRAGMENTED: return "WR_EWS_CONTROL_FRAGMENTED";
    case WR_EWS_CONTROL_TOO_LONG: return "WR_EWS_CONTROL_TOO_LONG";
    case WR_EWS_UNMASKED: return "WR_EWS_UNMASKED";
    case WR_EWS_MASKED: return "WR_EWS_MASKED";
    case WR_EWS_LENGTH: return "WR_EWS_LENGTH";
    case WR_EWS_CONTINUATION: return "WR_EWS_CONTINUATION";
    case WR_EWS_CLOSE_PAYLOAD: return "WR_EWS_CLOSE_PAYLOAD";
    case WR_EWS_TOO_BIG: return "WR_EWS_TOO_BIG";
    case WR_ESCAN_SYNTAX: return "WR_ESCAN_SYNTAX";
    case WR_ENOMEM: return "WR_ENOMEM";
    case WR_ECONF: return "WR_ECONF";
    case WR_EUPSTREAM_STATUS: return "WR_EUPSTREAM_STATUS";
    case WR_EUPSTREAM_HANDSHAKE: return "WR_EUPSTREAM_HANDSHAKE";
    default: break;
    }
    if (code < 0 && code > -4096) {
        const char *name = strerrorname_np(-code);
        if (name != NULL) {
            return name;
        }
    }
    return "EUNKNOWN";
}
