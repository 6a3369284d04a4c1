/* prompt: the `paper` and `script` presets against the released code's own text (extracted by
 * tests/reference/extract_prompts.py into tests/data/prompts/), and the chat request they make. */
#include "testutil.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../src/ground/runner_internal.h"
#include "vlm4rec/ground.h"

static char *data_file(const char *name) { return tu_read(V4R_TEST_DATA_DIR "/prompts", name); }

static void expect_same_bytes(const char *got, const char *want, const char *what)
{
    if (strcmp(got, want)) {
        size_t i = 0;
        while (got[i] && got[i] == want[i])
            i++;
        print_error("%s differs at byte %zu: got \"%.40s\", want \"%.40s\"\n", what, i, got + i, want + i);
    }
    assert_string_equal(got, want);
}

static void test_presets_are_the_released_text(void **state)
{
    char *script = data_file("released-script-prompt.txt"), *readme = data_file("released-readme-prompt.txt");
    assert_non_null(strstr(script, "system. \nInclude:")); /* the excerpt keeps the trailing space */
    expect_same_bytes(v4r_prompt_preset("script"), script, "script preset");
    expect_same_bytes(v4r_prompt_preset("paper"), readme, "paper preset");
    free(script);
    free(readme);
    (void)state;
}

/* The released script's f-string with {title} filled: the excerpt with the title put in its place. */
static char *released_filled(const char *excerpt, const char *title)
{
    const char *at = strstr(excerpt, "{title}");
    assert_non_null(at);
    assert_null(strstr(at + 1, "{title}"));
    return v4r_sprintf("%.*s%s%s", (int)(at - excerpt), excerpt, title, at + strlen("{title}"));
}

static void test_script_request_body(void **state)
{
    const char *title = "Women's \"Retro\" Sneaker {Blue} \xC3\xA9t\xC3\xA9 / 2-pack";
    char *excerpt = data_file("released-script-prompt.txt"), *want_text = released_filled(excerpt, title);
    char *prompt = v4r_prompt_fill(v4r_prompt_preset("script"), title);
    expect_same_bytes(prompt, want_text, "filled script prompt");
    v4r_ground_opts o = {.model = "llava-next-7b", .max_tokens = 150, .temperature = 0};
    char *body = v4r_request_body(&o, prompt, "data:image/jpeg;base64,/9j/AA==");
    json_t *text_json = json_string(want_text);
    char *quoted = json_dumps(text_json, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(text_json);
    char *want = v4r_sprintf("{\"model\":\"llava-next-7b\",\"messages\":[{\"role\":\"user\",\"content\":["
                             "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/jpeg;base64,/9j/AA==\"}},"
                             "{\"type\":\"text\",\"text\":%s}]}],\"max_tokens\":150,\"temperature\":0.0,"
                             "\"stream\":false}",
                             quoted);
    expect_same_bytes(body, want, "request body");
    free(want);
    free(quoted);
    free(body);
    free(prompt);
    free(want_text);
    free(excerpt);
    (void)state;
}

static void test_paper_request_body_image_first(void **state)
{
    char *readme = data_file("released-readme-prompt.txt");
    v4r_ground_opts o = {.model = "m", .max_tokens = 64, .temperature = 0, .has_seed = 1, .seed = 7};
    char *prompt = v4r_prompt_fill(v4r_prompt_preset("paper"), "ignored");
    char *body = v4r_request_body(&o, prompt, "data:image/png;base64,iVBO");
    json_t *j = json_loads(body, 0, NULL);
    json_t *content = json_object_get(json_array_get(json_object_get(j, "messages"), 0), "content");
    assert_int_equal(json_array_size(content), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(content, 0), "type")), "image_url");
    assert_string_equal(json_string_value(json_object_get(json_array_get(content, 1), "text")), readme);
    assert_int_equal(json_integer_value(json_object_get(j, "seed")), 7);
    json_decref(j);
    free(body);
    free(prompt);
    free(readme);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets_are_the_released_text),
        cmocka_unit_test(test_script_request_body),
        cmocka_unit_test(test_paper_request_body_image_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
