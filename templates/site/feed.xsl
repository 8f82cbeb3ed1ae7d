<?xml version="1.0" encoding="UTF-8"?>
<!-- Shown when a person opens a feed in a browser; feed readers ignore it and read the Atom. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:atom="http://www.w3.org/2005/Atom">
  <xsl:output method="html" encoding="UTF-8" indent="yes"/>
  <xsl:template match="/atom:feed">
    <html lang="{{ site.language }}">
      <head>
        <meta charset="utf-8"/>
        <meta name="viewport" content="width=device-width, initial-scale=1"/>
        <title><xsl:value-of select="atom:title"/> — {{ labels.feed }}</title>
        <style>
          body { font-family: Georgia, "Times New Roman", serif; line-height: 1.6; max-width: 42rem; margin: 0 auto; padding: 1rem 1.25rem 3rem; color: #1f2328; background: #fff; }
          a { color: #0b5cad; }
          .about { border: 1px solid #d0d7de; border-radius: 6px; padding: .5rem 1rem; }
          code { word-break: break-all; }
          .meta { color: #57606a; font-size: .9rem; }
          @media (prefers-color-scheme: dark) { body { color: #e6edf3; background: #0d1117; } a { color: #58a6ff; } .meta { color: #9198a1; } }
        </style>
      </head>
      <body>
        <div class="about">
          <p><strong>{{ labels.feed_what }}</strong></p>
          <p>{{ labels.feed_how }}</p>
          <p><code><xsl:value-of select="atom:link[@rel='self']/@href"/></code></p>
{% if subscribe_url %}          <p><a href="{{ site.base_url }}">{{ labels.feed_by_email }}</a></p>
{% endif %}        </div>
        <h1><a href="{atom:link[@rel='alternate']/@href}"><xsl:value-of select="atom:title"/></a></h1>
        <p><xsl:value-of select="atom:subtitle"/></p>
        <xsl:for-each select="atom:entry">
          <h2><a href="{atom:link[@rel='alternate']/@href}"><xsl:value-of select="atom:title"/></a></h2>
          <p class="meta"><xsl:value-of select="substring(atom:published, 1, 10)"/></p>
          <p><xsl:value-of select="atom:summary"/></p>
        </xsl:for-each>
      </body>
    </html>
  </xsl:template>
</xsl:stylesheet>
