#include "engine/host/libvirt_util.h"

#include <libvirt/virterror.h>
#include <libxml/parser.h>

#include <cstdlib>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace ferry {
namespace {

void IgnoreLibvirtError(void*, virErrorPtr) {}

// libxml2 prints parser warnings ("I/O warning : failed to load external entity") to stderr from
// inside libvirt's test driver; libvirt's own error says the same, once.
void IgnoreXmlError(void*, const char*, ...) {}

}  // namespace

absl::StatusOr<LibvirtConn> OpenLibvirt(const std::string& uri) {
  static std::once_flag once;
  std::call_once(once, [] { virSetErrorFunc(nullptr, IgnoreLibvirtError); });
  xmlSetGenericErrorFunc(nullptr, IgnoreXmlError);  // per thread in libxml2
  virConnectPtr c = virConnectOpenReadOnly(uri.c_str());
  if (c == nullptr) c = virConnectOpen(uri.c_str());
  if (c == nullptr) return LibvirtError(absl::StrCat("libvirt connection to '", uri, "'"));
  return LibvirtConn(c);
}

absl::Status LibvirtError(const std::string& what) {
  const char* msg = virGetLastErrorMessage();
  return absl::UnavailableError(absl::StrCat(what, ": ", msg ? msg : "unknown libvirt error"));
}

absl::StatusOr<std::string> TakeLibvirtString(char* s, const std::string& what) {
  if (s == nullptr) return LibvirtError(what);
  std::string out(s);
  free(s);
  return out;
}

absl::StatusOr<XmlDoc> XmlDoc::Parse(const std::string& xml, const std::string& what) {
  XmlDoc d;
  d.doc_.reset(xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "libvirt.xml", nullptr,
                             XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
  if (!d.doc_) return absl::DataLossError(absl::StrCat(what, ": libvirt returned malformed XML"));
  return d;
}

std::vector<std::string> XmlDoc::All(const char* xpath) const {
  std::vector<std::string> out;
  xmlXPathContextPtr ctx = xmlXPathNewContext(doc_.get());
  if (ctx == nullptr) return out;
  xmlXPathObjectPtr obj = xmlXPathEvalExpression(reinterpret_cast<const xmlChar*>(xpath), ctx);
  if (obj != nullptr && obj->nodesetval != nullptr) {
    for (int i = 0; i < obj->nodesetval->nodeNr; ++i) {
      xmlChar* text = xmlNodeGetContent(obj->nodesetval->nodeTab[i]);
      out.emplace_back(text ? reinterpret_cast<const char*>(text) : "");
      xmlFree(text);
    }
  }
  xmlXPathFreeObject(obj);
  xmlXPathFreeContext(ctx);
  return out;
}

std::string XmlDoc::First(const char* xpath) const {
  std::vector<std::string> all = All(xpath);
  return all.empty() ? "" : all.front();
}

}  // namespace ferry
