// This file IS the default catalog's data file: the text between the #""" marks is a catalog
// in the format of docs/pricing.md, exactly as a host would keep it in its own file, and
// `Catalog.standard` parses it. It lives in a Swift string because the package links no
// Foundation and so ships no bundle resources. It is the only copy of the seed's price
// tables: tests and docs read prices from here (`credits catalog` prints them).

let defaultCatalogText = #"""
# Aideon Credits model catalog: the six price tables of the seed document
# (shared/seed/credit-system-guide.md). 1 credit = $0.01.
# Margins are computed from the two prices (`credits catalog`); the seed's margin column is
# not copied: its standard text table is wrong.

model               | provider       | kind  | quality  | unit       | provider_cost_usd | credits

# Standard text LLMs, per 1K tokens (input and output at the same rate)
GPT-3.5 Turbo       | OpenAI         | text  | standard | 1K tokens  | 0.0015            | 2
Llama 2 (70B)       | Meta/Replicate | text  | standard | 1K tokens  | 0.0013            | 2
Mistral 7B          | Mistral AI     | text  | standard | 1K tokens  | 0.00075           | 1.5
Cohere Command      | Cohere         | text  | standard | 1K tokens  | 0.0015            | 2
Claude 3 Haiku      | Anthropic      | text  | standard | 1K tokens  | 0.00025           | 1

# Premium text LLMs, per 1K tokens
GPT-4 Turbo         | OpenAI         | text  | premium  | 1K tokens  | 0.03              | 15
Claude 3 Opus       | Anthropic      | text  | premium  | 1K tokens  | 0.075             | 15
Gemini Ultra        | Google         | text  | premium  | 1K tokens  | 0.036             | 15
GPT-4o              | OpenAI         | text  | premium  | 1K tokens  | 0.015             | 10
Claude 3 Sonnet     | Anthropic      | text  | premium  | 1K tokens  | 0.015             | 10

# Standard image generation, per HD image
DALL-E 2            | OpenAI         | image | standard | HD image   | 0.02              | 5
Stable Diffusion XL | Stability AI   | image | standard | HD image   | 0.02              | 5
Midjourney Basic    | Midjourney     | image | standard | HD image   | 0.08              | 8
Imagen Basic        | Google         | image | standard | HD image   | 0.05              | 5

# Premium image generation, per HD image
DALL-E 3            | OpenAI         | image | premium  | HD image   | 0.12              | 20
Midjourney Pro      | Midjourney     | image | premium  | HD image   | 0.20              | 25
Stable Diffusion 3  | Stability AI   | image | premium  | HD image   | 0.15              | 20
Imagen 2            | Google         | image | premium  | HD image   | 0.18              | 20

# Standard video generation, per started 5-second HD clip
Runway Gen-1        | Runway         | video | standard | 5s HD clip | 0.80              | 80
Pika Basic          | Pika Labs      | video | standard | 5s HD clip | 0.50              | 60
Luma Basic          | Luma AI        | video | standard | 5s HD clip | 0.60              | 70
Stable Video        | Stability AI   | video | standard | 5s HD clip | 0.40              | 50

# Premium video generation, per started 5-second HD clip
Runway Gen-2        | Runway         | video | premium  | 5s HD clip | 1.50              | 180
Pika Pro            | Pika Labs      | video | premium  | 5s HD clip | 1.20              | 150
Luma Pro            | Luma AI        | video | premium  | 5s HD clip | 1.40              | 170
Sora Pro            | OpenAI         | video | premium  | 5s HD clip | 2.50              | 280
"""#
